#include "api/cloisterd/oci_api.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "api/cloisterd/blob_io.h"
#include "api/cloisterd/request_fields.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;
using registry::OciPath;
using Kind = registry::OciPath::Kind;

api::Response Empty(int status) {
  api::Response response;
  response.status = status;
  return response;
}

api::Response StorageError(const Status& status) {
  return OciError(status.code() == StatusCode::kNoSpace ? 507 : 500, "UNKNOWN",
                  "storage: " + status.message());
}

// The answer for an engine reply that is not ok.
api::Response ReplyError(const engine::Reply& reply, std::string_view invalid_code) {
  if (!reply.status.ok()) {
    return OciError(503, "UNAVAILABLE", "the change could not be recorded; retry");
  }
  switch (reply.rejection) {
    case engine::Rejection::kNotFound:
      return OciError(404, "NAME_UNKNOWN", reply.message);
    case engine::Rejection::kNameTaken:
      return OciError(409, "DENIED", reply.message);
    case engine::Rejection::kForbidden:
      return OciError(403, "DENIED", reply.message);
    case engine::Rejection::kOverloaded:
      return OciError(429, "TOOMANYREQUESTS", reply.message);
    default:
      return OciError(400, invalid_code, reply.message);
  }
}

// n and last of a paginated list; false once it answered 400.
bool Page(const api::Request& request, size_t* n, std::string* last,
          const OciApi::Respond& respond) {
  *n = SIZE_MAX;
  if (std::optional<std::string> text = QueryParam(request.query, "n")) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || text->size() > 9) {
      respond(OciError(400, "PAGINATION_NUMBER_INVALID", "n must be a whole number"));
      return false;
    }
    *n = static_cast<size_t>(value);
  }
  *last = QueryParam(request.query, "last").value_or("");
  return true;
}

// The page of sorted names after last, at most n; sets *more when some were left out.
std::vector<std::string> PageOf(std::vector<std::string> names, size_t n, const std::string& last,
                                bool* more) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  auto from = last.empty() ? names.begin() : std::upper_bound(names.begin(), names.end(), last);
  std::vector<std::string> page(from, names.end());
  *more = page.size() > n;
  if (*more) {
    page.resize(n);
  }
  return page;
}

api::Response JsonResponse(const Json& j) {
  api::Response response;
  response.content_type = "application/json";
  response.body = j.dump();
  return response;
}

}  // namespace

api::Response OciError(int status, std::string_view code, std::string_view message) {
  Json error = Json::object();
  error["code"] = code;
  error["message"] = message;
  error["detail"] = nullptr;
  Json j = {{"errors", Json::array({error})}};
  api::Response response = JsonResponse(j);
  response.status = status;
  return response;
}

api::Response OciFromEnvelope(api::Response response) {
  if (response.status < 400 || response.body.find("\"status\":\"FAIL\"") == std::string::npos) {
    return response;
  }
  Json envelope = Json::parse(response.body, nullptr, false);
  const std::string message = envelope.is_object() && envelope["message"].is_string()
                                  ? envelope["message"].get<std::string>()
                                  : std::string("request failed");
  const char* code = "UNKNOWN";
  switch (response.status) {
    case 401: code = "UNAUTHORIZED"; break;
    case 403: code = "DENIED"; break;
    case 404: code = "NAME_UNKNOWN"; break;
    case 405: code = "UNSUPPORTED"; break;
    case 429: code = "TOOMANYREQUESTS"; break;
    default: break;
  }
  api::Response oci = OciError(response.status, code, message);
  for (const api::Header& header : response.headers.entries()) {
    oci.headers.Add(header.name, header.value);
  }
  if (response.status == 401 && oci.headers.Find("WWW-Authenticate") == nullptr) {
    oci.headers.Add("WWW-Authenticate", "Basic realm=\"cloister\"");
  }
  return oci;
}

OciApi::OciApi(engine::Engine* engine, registry::BlobStore* blobs, engine::Clock* clock)
    : engine_(engine), blobs_(blobs), clock_(clock) {}

const reducers::Template* OciApi::FindTemplate(const std::string& name) const {
  return reducers::FindTemplate(engine_->views(), name);
}

bool OciApi::MayUse(const api::Request& request, const reducers::Template* t,
                    const char* permission, Respond& respond) {
  return t == nullptr || !resource_check_ ||
         resource_check_(request, t->template_id, permission, respond);
}

bool OciApi::Holds(const reducers::Template* t, const std::string& digest) {
  if (t == nullptr) {
    return false;
  }
  if (t->manifests.contains(digest)) {
    return true;
  }
  for (const auto& [manifest_digest, manifest] : t->manifests) {
    for (const reducers::RegistryReference& ref : manifest.references) {
      if (ref.digest == digest) {
        return true;
      }
    }
  }
  return false;
}

void OciApi::Tick(int64_t now_ns) {
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    if (it->second.writer.expired() && now_ns - it->second.touched_ns > kUploadIdleNs) {
      (void)blobs_->Cancel(it->first);
      it = uploads_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<std::string> OciApi::NewUpload(const std::string& repository, Respond& respond) {
  if (uploads_.size() >= kUploadsMax) {
    respond(OciError(429, "TOOMANYREQUESTS", "too many uploads in progress; finish or cancel some"));
    return std::nullopt;
  }
  Result<std::string> id = blobs_->StartUpload();
  if (!id.ok()) {
    respond(StorageError(id.status()));
    return std::nullopt;
  }
  uploads_[*id] = Upload{repository, clock_->NowNs(), {}};
  return *id;
}

api::Response OciApi::UploadResponse(int status, const std::string& name, const std::string& id) {
  api::Response response = Empty(status);
  response.headers.Add("Location", "/v2/" + name + "/blobs/uploads/" + id);
  response.headers.Add("Docker-Upload-UUID", id);
  Result<uint64_t> received = blobs_->UploadSize(id);
  const uint64_t size = received.ok() ? *received : 0;
  response.headers.Add("Range", "0-" + std::to_string(size == 0 ? 0 : size - 1));
  return response;
}

std::shared_ptr<api::BodySink> OciApi::StreamBody(const api::Request& head,
                                                  std::optional<api::Response>* reject) {
  const OciPath path = registry::ParseOciPath(head.path);
  Respond refuse = [reject](api::Response response) { *reject = std::move(response); };
  if (path.kind == Kind::kUploads && head.method == "POST" &&
      QueryParam(head.query, "digest").has_value()) {
    std::optional<std::string> id = NewUpload(path.name, refuse);
    if (!id) {
      return nullptr;
    }
    auto sink = std::make_shared<UploadSink>(blobs_, *id, 0);
    uploads_[*id].writer = sink;
    return sink;
  }
  if (path.kind != Kind::kUpload || (head.method != "PATCH" && head.method != "PUT")) {
    return nullptr;
  }
  auto upload = uploads_.find(path.reference);
  Result<uint64_t> size = blobs_->UploadSize(path.reference);
  if (upload == uploads_.end() || !size.ok() || upload->second.repository != path.name) {
    *reject = OciError(404, "BLOB_UPLOAD_UNKNOWN", "no such upload");
    return nullptr;
  }
  upload->second.touched_ns = clock_->NowNs();
  if (const std::string* range = head.headers.Find("Content-Range")) {
    // "<start>-<end>": a chunk must start where the upload ends.
    const std::string start = range->substr(0, range->find('-'));
    if (start != std::to_string(*size)) {
      api::Response response = UploadResponse(416, path.name, path.reference);
      api::Response error = OciError(416, "BLOB_UPLOAD_INVALID",
                                     "the chunk must start at byte " + std::to_string(*size));
      response.content_type = error.content_type;
      response.body = error.body;
      *reject = std::move(response);
      return nullptr;
    }
  }
  auto sink = std::make_shared<UploadSink>(blobs_, path.reference, *size);
  upload->second.writer = sink;
  return sink;
}

void OciApi::Handle(const api::Request& request, Respond respond) {
  const OciPath path = registry::ParseOciPath(request.path);
  const std::string& m = request.method;
  const bool get = m == "GET" || m == "HEAD";
  if (path.kind != Kind::kBase && path.kind != Kind::kCatalog &&
      !registry::IsRepositoryName(path.name) && FindTemplate(path.name) == nullptr) {
    respond(OciError(400, "NAME_INVALID", "invalid repository name"));
    return;
  }
  switch (path.kind) {
    case Kind::kBase:
      respond(JsonResponse(Json::object()));
      return;
    case Kind::kCatalog:
      Catalog(request, std::move(respond));
      return;
    case Kind::kTags:
      Tags(request, path, std::move(respond));
      return;
    case Kind::kManifest:
      get ? GetManifest(request, path, std::move(respond))
          : m == "PUT" ? PutManifest(request, path, std::move(respond))
                       : DeleteManifest(request, path, std::move(respond));
      return;
    case Kind::kBlob:
      GetBlob(request, path, std::move(respond));
      return;
    case Kind::kUploads:
      StartUpload(request, path, std::move(respond));
      return;
    case Kind::kUpload:
      if (get) {
        UploadStatus(request, path, std::move(respond));
      } else if (m == "DELETE") {
        CancelUpload(path, std::move(respond));
      } else if (m == "PATCH") {
        Chunk(request, path, std::move(respond));
      } else {
        FinishUpload(request, path, path.reference, std::move(respond));
      }
      return;
    case Kind::kUnknown:
      break;
  }
  respond(OciError(404, "NAME_UNKNOWN", "not found"));
}

void OciApi::Catalog(const api::Request& request, Respond respond) {
  size_t n = 0;
  std::string last;
  if (!Page(request, &n, &last, respond)) {
    return;
  }
  std::vector<std::string> names;
  for (const auto& [id, t] : engine_->views().templates.templates) {
    names.push_back(t.name.empty() ? id : t.name);
  }
  bool more = false;
  std::vector<std::string> page = PageOf(std::move(names), n, last, &more);
  api::Response response = JsonResponse(Json{{"repositories", page}});
  if (more) {
    response.headers.Add("Link", "</v2/_catalog?n=" + std::to_string(n) + "&last=" +
                                     page.back() + ">; rel=\"next\"");
  }
  respond(std::move(response));
}

void OciApi::Tags(const api::Request& request, const OciPath& path, Respond respond) {
  const reducers::Template* t = FindTemplate(path.name);
  if (t == nullptr) {
    respond(OciError(404, "NAME_UNKNOWN", "repository " + path.name + " is not known"));
    return;
  }
  if (!MayUse(request, t, "list", respond)) {
    return;
  }
  size_t n = 0;
  std::string last;
  if (!Page(request, &n, &last, respond)) {
    return;
  }
  std::vector<std::string> names;
  for (const reducers::TemplateTag& tag : t->tags) {
    names.push_back(tag.tag);
  }
  bool more = false;
  std::vector<std::string> page = PageOf(std::move(names), n, last, &more);
  api::Response response = JsonResponse(Json{{"name", path.name}, {"tags", page}});
  if (more) {
    response.headers.Add("Link", "</v2/" + path.name + "/tags/list?n=" + std::to_string(n) +
                                     "&last=" + page.back() + ">; rel=\"next\"");
  }
  respond(std::move(response));
}

void OciApi::GetManifest(const api::Request& request, const OciPath& path, Respond respond) {
  const reducers::Template* t = FindTemplate(path.name);
  if (t == nullptr) {
    respond(OciError(404, "NAME_UNKNOWN", "repository " + path.name + " is not known"));
    return;
  }
  if (!MayUse(request, t, "pull", respond)) {
    return;
  }
  std::string digest = path.reference;
  if (!registry::IsSha256Digest(digest)) {
    auto tag = std::find_if(t->tags.begin(), t->tags.end(),
                            [&](const reducers::TemplateTag& one) { return one.tag == digest; });
    digest = tag == t->tags.end() ? "" : tag->digest;
  }
  auto manifest = t->manifests.find(digest);
  Result<std::string> file = blobs_->Path(digest);
  if (digest.empty() || manifest == t->manifests.end() || !file.ok()) {
    respond(OciError(404, "MANIFEST_UNKNOWN", "manifest " + path.reference + " is not known"));
    return;
  }
  const int fd = ::open(file->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    respond(OciError(500, "UNKNOWN", "the manifest's file cannot be read"));
    return;
  }
  api::Response response;
  response.content_type = manifest->second.media_type;
  response.headers.Add("Docker-Content-Digest", digest);
  response.body_source = std::make_shared<FileSource>(fd, 0, manifest->second.size);
  respond(std::move(response));
}

void OciApi::PutManifest(const api::Request& request, const OciPath& path, Respond respond) {
  if (request.body.size() > kManifestBytesMax) {
    respond(OciError(413, "SIZE_INVALID", "a manifest may be at most 4 MiB"));
    return;
  }
  // Authorization before validation: a refused caller learns nothing about its document.
  const reducers::Template* t = FindTemplate(path.name);
  if (!MayUse(request, t, "push_tag", respond)) {
    return;
  }
  const std::string* type = request.headers.Find("Content-Type");
  Result<registry::ParsedManifest> parsed =
      registry::ParseManifest(request.body, type == nullptr ? "" : *type);
  if (!parsed.ok()) {
    respond(OciError(400, "MANIFEST_INVALID", parsed.status().message()));
    return;
  }
  const std::string digest = registry::Sha256Digest(request.body);
  const bool by_digest = path.reference.starts_with("sha256:") ||
                         path.reference.find(':') != std::string::npos;
  if (by_digest && path.reference != digest) {
    respond(OciError(400, "DIGEST_INVALID", "the manifest's digest is " + digest));
    return;
  }
  if (!by_digest && !registry::IsTag(path.reference)) {
    respond(OciError(400, "TAG_INVALID", "invalid tag"));
    return;
  }
  engine::PushManifest push;
  for (const registry::Descriptor& ref : parsed->references) {
    if (!parsed->index && blobs_->Size(ref.digest) != ref.size) {
      respond(OciError(400, "MANIFEST_BLOB_UNKNOWN", "blob " + ref.digest + " is not in the "
                                                     "registry (or has another size)"));
      return;
    }
    if (!parsed->index) {
      blobs_->Touch(ref.digest);  // Named now: garbage collection must wait for the event.
    }
    push.references.push_back({ref.digest, ref.size, ref.media_type});
  }
  // The bytes first, durably; the event then makes them visible.
  Result<std::string> upload = blobs_->StartUpload();
  Status stored = upload.ok() ? Status::Ok() : upload.status();
  if (stored.ok()) {
    Result<uint64_t> appended = blobs_->Append(*upload, 0, request.body);
    stored = appended.ok() ? blobs_->Finish(*upload, digest) : appended.status();
    if (!appended.ok()) {
      (void)blobs_->Cancel(*upload);
    }
  }
  if (!stored.ok()) {
    respond(StorageError(stored));
    return;
  }
  push.repository = path.name;
  push.digest = digest;
  push.media_type = parsed->media_type;
  push.size = request.body.size();
  push.tag = by_digest ? "" : path.reference;
  push.description = parsed->description;
  const std::string name = path.name;
  engine_->Submit(*principal_, std::move(push), request.id,
                  [name, digest, respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      api::Response error = ReplyError(reply, "MANIFEST_INVALID");
                      if (reply.rejection == engine::Rejection::kNotFound) {
                        error = OciError(400, "MANIFEST_BLOB_UNKNOWN", reply.message);
                      }
                      respond(std::move(error));
                      return;
                    }
                    api::Response response = Empty(201);
                    response.headers.Add("Location", "/v2/" + name + "/manifests/" + digest);
                    response.headers.Add("Docker-Content-Digest", digest);
                    respond(std::move(response));
                  });
}

void OciApi::DeleteManifest(const api::Request& request, const OciPath& path, Respond respond) {
  const reducers::Template* t = FindTemplate(path.name);
  if (t == nullptr) {
    respond(OciError(404, "NAME_UNKNOWN", "repository " + path.name + " is not known"));
    return;
  }
  if (!MayUse(request, t, "delete_revert", respond)) {
    return;
  }
  engine::RemoveTemplateContent remove;
  remove.mode = engine::RemoveTemplateContent::Mode::kDeleteManifest;
  remove.template_ref = t->template_id;
  remove.digest = path.reference;
  if (!registry::IsSha256Digest(path.reference)) {
    // A tag: its manifest goes, with every tag naming it.
    auto tag = std::find_if(t->tags.begin(), t->tags.end(),
                            [&](const auto& one) { return one.tag == path.reference; });
    if (tag == t->tags.end() || tag->digest.empty()) {
      respond(OciError(404, "MANIFEST_UNKNOWN", "manifest " + path.reference + " is not known"));
      return;
    }
    remove.digest = tag->digest;
  }
  if (!t->manifests.contains(remove.digest)) {
    respond(OciError(404, "MANIFEST_UNKNOWN", "manifest " + path.reference + " is not known"));
    return;
  }
  engine_->Submit(*principal_, std::move(remove), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? Empty(202) : ReplyError(reply, "UNSUPPORTED"));
                  });
}

void OciApi::GetBlob(const api::Request& request, const OciPath& path, Respond respond) {
  if (!registry::IsSha256Digest(path.reference)) {
    respond(OciError(400, "DIGEST_INVALID", "a blob is named by sha256:<64 lowercase hex>"));
    return;
  }
  const reducers::Template* t = FindTemplate(path.name);
  if (resource_check_ && !Holds(t, path.reference)) {
    // Blobs are shared by every repository; with resource management a blob is readable only
    // through a template that holds it (and the caller may pull), or anyone who knows a digest
    // could read any template's disk through a repository of their own.
    respond(OciError(404, "BLOB_UNKNOWN", "blob " + path.reference + " is not known"));
    return;
  }
  if (!MayUse(request, t, "pull", respond)) {
    return;
  }
  std::optional<uint64_t> size = blobs_->Size(path.reference);
  Result<std::string> file = blobs_->Path(path.reference);
  const int fd = size && file.ok() ? ::open(file->c_str(), O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    respond(OciError(404, "BLOB_UNKNOWN", "blob " + path.reference + " is not known"));
    return;
  }
  api::Response response;
  response.content_type = "application/octet-stream";
  response.headers.Add("Docker-Content-Digest", path.reference);
  response.headers.Add("Accept-Ranges", "bytes");
  registry::ByteRange range{0, *size == 0 ? 0 : *size - 1};
  const std::string* header = request.headers.Find("Range");
  const registry::RangeParse parse = header == nullptr
                                         ? registry::RangeParse::kNone
                                         : registry::ParseRange(*header, *size, &range);
  if (parse == registry::RangeParse::kUnsatisfiable) {
    ::close(fd);
    api::Response refused = OciError(416, "BLOB_UNKNOWN", "range not satisfiable");
    refused.headers.Add("Content-Range", "bytes */" + std::to_string(*size));
    respond(std::move(refused));
    return;
  }
  uint64_t offset = 0;
  uint64_t length = *size;
  if (parse == registry::RangeParse::kRange) {
    response.status = 206;
    offset = range.first;
    length = range.last - range.first + 1;
    response.headers.Add("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                              std::to_string(range.last) + "/" +
                                              std::to_string(*size));
  }
  response.body_source = std::make_shared<FileSource>(fd, offset, length);
  respond(std::move(response));
}

void OciApi::StartUpload(const api::Request& request, const OciPath& path, Respond respond) {
  if (request.method != "POST") {
    respond(OciError(405, "UNSUPPORTED", "method not allowed"));
    return;
  }
  if (!MayUse(request, FindTemplate(path.name), "push_tag", respond)) {
    return;
  }
  const std::optional<std::string> mount = QueryParam(request.query, "mount");
  if (mount && registry::IsSha256Digest(*mount) && blobs_->Size(*mount).has_value()) {
    // Blobs are shared by every repository: a mount of a held blob needs only the right to
    // read where it comes from (a repository with no manifest yet holds only uploads, which
    // anyone allowed to push may reuse).
    const std::string from = QueryParam(request.query, "from").value_or("");
    if (!MayUse(request, FindTemplate(from), "pull", respond)) {
      return;
    }
    blobs_->Touch(*mount);
    api::Response response = Empty(201);
    response.headers.Add("Location", "/v2/" + path.name + "/blobs/" + *mount);
    response.headers.Add("Docker-Content-Digest", *mount);
    respond(std::move(response));
    return;
  }
  if (request.body_sink != nullptr) {
    auto sink = std::static_pointer_cast<UploadSink>(request.body_sink);
    FinishUpload(request, path, sink->upload_id(), std::move(respond));
    return;
  }
  std::optional<std::string> id = NewUpload(path.name, respond);
  if (!id) {
    return;
  }
  if (QueryParam(request.query, "digest").has_value()) {
    FinishUpload(request, path, *id, std::move(respond));  // A monolithic empty blob.
    return;
  }
  respond(UploadResponse(202, path.name, *id));
}

void OciApi::UploadStatus(const api::Request&, const OciPath& path, Respond respond) {
  auto upload = uploads_.find(path.reference);
  if (upload == uploads_.end() || upload->second.repository != path.name) {
    respond(OciError(404, "BLOB_UPLOAD_UNKNOWN", "no such upload"));
    return;
  }
  respond(UploadResponse(204, path.name, path.reference));
}

void OciApi::Chunk(const api::Request& request, const OciPath& path, Respond respond) {
  auto upload = uploads_.find(path.reference);
  if (upload == uploads_.end() || upload->second.repository != path.name) {
    respond(OciError(404, "BLOB_UPLOAD_UNKNOWN", "no such upload"));
    return;
  }
  upload->second.touched_ns = clock_->NowNs();
  if (request.body_sink != nullptr) {
    auto sink = std::static_pointer_cast<UploadSink>(request.body_sink);
    if (!sink->error().ok()) {
      respond(StorageError(sink->error()));
      return;
    }
  }
  respond(UploadResponse(202, path.name, path.reference));
}

void OciApi::FinishUpload(const api::Request& request, const OciPath& path,
                          const std::string& upload_id, Respond respond) {
  auto upload = uploads_.find(upload_id);
  if (upload == uploads_.end() || upload->second.repository != path.name) {
    respond(OciError(404, "BLOB_UPLOAD_UNKNOWN", "no such upload"));
    return;
  }
  if (request.body_sink != nullptr) {
    auto sink = std::static_pointer_cast<UploadSink>(request.body_sink);
    if (!sink->error().ok()) {
      respond(StorageError(sink->error()));
      return;
    }
  }
  const std::string digest = QueryParam(request.query, "digest").value_or("");
  if (!registry::IsSha256Digest(digest)) {
    respond(OciError(400, "DIGEST_INVALID", digest.empty()
                                                ? "the digest parameter is required"
                                                : "only sha256:<64 lowercase hex> is supported"));
    return;
  }
  Result<registry::BlobStore::Sealed> sealed = blobs_->Seal(upload_id, digest);
  uploads_.erase(upload);
  if (!sealed.ok()) {
    respond(sealed.status().code() == StatusCode::kInvalidArgument
                ? OciError(400, "DIGEST_INVALID", sealed.status().message())
                : StorageError(sealed.status()));
    return;
  }
  // The blob is acknowledged only once durable; the commit runs off the loop.
  CommitOffLoop(offload_, std::move(sealed.value()),
                [location = "/v2/" + path.name + "/blobs/" + digest, digest,
                 respond = std::move(respond)](const Status& status) {
                  if (!status.ok()) {
                    respond(StorageError(status));
                    return;
                  }
                  api::Response response = Empty(201);
                  response.headers.Add("Location", location);
                  response.headers.Add("Docker-Content-Digest", digest);
                  respond(std::move(response));
                });
}

void OciApi::CancelUpload(const OciPath& path, Respond respond) {
  auto upload = uploads_.find(path.reference);
  if (upload == uploads_.end() || upload->second.repository != path.name) {
    respond(OciError(404, "BLOB_UPLOAD_UNKNOWN", "no such upload"));
    return;
  }
  (void)blobs_->Cancel(path.reference);
  uploads_.erase(upload);
  respond(Empty(204));
}

}  // namespace cloister::cloisterd
