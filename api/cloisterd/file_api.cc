#include "api/cloisterd/file_api.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "api/cloisterd/blob_io.h"
#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "reducers/view_json.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

// The path parameter, checked; nullopt once *reject holds the 400.
std::optional<std::string> PathParam(const api::Request& request,
                                     std::optional<api::Response>* reject) {
  const std::optional<std::string> path = QueryParam(request.query, "path");
  const std::string problem = engine::FilePathProblem(path.value_or(""));
  if (!problem.empty()) {
    *reject = api::FailResponse(400, "path: " + problem);
    return std::nullopt;
  }
  return path;
}

// The digest parameter: absent, or a well-formed sha256 digest; false once *reject holds a 400.
bool DigestParam(const api::Request& request, std::optional<api::Response>* reject) {
  const std::optional<std::string> digest = QueryParam(request.query, "digest");
  std::string error;
  if (digest && !registry::ParseDigest(*digest, &error)) {
    *reject = api::FailResponse(400, "digest: " + error);
    return false;
  }
  return true;
}

}  // namespace

FileApi::FileApi(engine::Engine* engine, registry::BlobStore* blobs, Offload offload)
    : engine_(engine), blobs_(blobs), offload_(std::move(offload)) {}

std::shared_ptr<api::BodySink> FileApi::StreamBody(const api::Request& head,
                                                   std::optional<api::Response>* reject) {
  if (head.method != "PUT" || !PathParam(head, reject) || !DigestParam(head, reject)) {
    return nullptr;
  }
  Result<std::string> id = blobs_->StartUpload();
  if (!id.ok()) {
    *reject = StorageFailure(id.status());
    return nullptr;
  }
  return std::make_shared<UploadSink>(blobs_, *id, 0);
}

bool FileApi::Handle(const api::Request& request, Respond& respond) {
  if (request.path != "/file") {
    return false;
  }
  if (request.method == "PUT") {
    Put(request, std::move(respond));
  } else if (request.method == "DELETE") {
    Delete(request, std::move(respond));
  } else if (QueryParam(request.query, "path").has_value()) {
    Get(request, std::move(respond));
  } else {
    List(std::move(respond));
  }
  return true;
}

void FileApi::Put(const api::Request& request, Respond respond) {
  std::optional<api::Response> reject;
  const std::optional<std::string> path = PathParam(request, &reject);
  if (!path || !DigestParam(request, &reject)) {
    if (request.body_sink != nullptr) {
      (void)blobs_->Cancel(std::static_pointer_cast<UploadSink>(request.body_sink)->upload_id());
    }
    respond(std::move(*reject));
    return;
  }
  if (request.body_sink != nullptr) {
    auto sink = std::static_pointer_cast<UploadSink>(request.body_sink);
    if (!sink->error().ok()) {
      (void)blobs_->Cancel(sink->upload_id());
      respond(StorageFailure(sink->error()));
      return;
    }
    Store(request, *path, sink->upload_id(), sink->size(), std::move(respond));
    return;
  }
  // No body was streamed (an empty one, or a body small enough to arrive with the head).
  Result<std::string> id = blobs_->StartUpload();
  Result<uint64_t> size = id.ok() ? blobs_->Append(*id, 0, request.body) : id.status();
  if (!size.ok()) {
    if (id.ok()) {
      (void)blobs_->Cancel(*id);
    }
    respond(StorageFailure(size.status()));
    return;
  }
  Store(request, *path, *id, *size, std::move(respond));
}

void FileApi::Store(const api::Request& request, const std::string& path,
                    const std::string& upload_id, uint64_t size, Respond respond) {
  Result<std::string> actual = blobs_->UploadDigest(upload_id);
  if (!actual.ok()) {
    (void)blobs_->Cancel(upload_id);
    respond(StorageFailure(actual.status()));
    return;
  }
  const std::string claimed = QueryParam(request.query, "digest").value_or(*actual);
  if (claimed != *actual) {
    (void)blobs_->Cancel(upload_id);  // Nothing is kept.
    respond(api::FailResponse(400, "digest mismatch: the bytes are " + *actual));
    return;
  }
  Result<registry::BlobStore::Sealed> sealed = blobs_->Seal(upload_id, *actual);
  if (!sealed.ok()) {
    respond(StorageFailure(sealed.status()));
    return;
  }
  engine::StoreFile store{path, *actual, size};
  CommitOffLoop(offload_, std::move(sealed.value()),
                [this, store = std::move(store), request_id = request.id,
                 principal = *principal_,
                 respond = std::move(respond)](const Status& status) mutable {
                  if (!status.ok()) {
                    respond(StorageFailure(status));
                    return;
                  }
                  // Durable; the event makes it the path's (gc spares it meanwhile: it is young).
                  blobs_->Touch(store.digest);
                  const std::string body =
                      Json{{"path", store.path}, {"size", store.size}, {"digest", store.digest}}
                          .dump();
                  engine_->Submit(principal, std::move(store), request_id,
                                  [body, respond = std::move(respond)](engine::Reply reply) {
                                    respond(reply.ok() ? OkResponse(body)
                                                       : FailedReplyResponse(reply));
                                  });
                });
}

void FileApi::Get(const api::Request& request, Respond respond) {
  std::optional<api::Response> reject;
  const std::optional<std::string> path = PathParam(request, &reject);
  if (!path) {
    respond(std::move(*reject));
    return;
  }
  const auto& files = engine_->views().files.files;
  auto file = files.find(*path);
  Result<std::string> blob =
      file == files.end() ? Status::NotFound("") : blobs_->Path(file->second.digest);
  const int fd = blob.ok() ? ::open(blob->c_str(), O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    respond(api::FailResponse(404, "no such file"));
    return;
  }
  api::Response response;
  response.content_type = "application/octet-stream";
  response.headers.Add("Docker-Content-Digest", file->second.digest);
  response.body_source = std::make_shared<FileSource>(fd, 0, file->second.size);
  respond(std::move(response));
}

void FileApi::List(Respond respond) {
  Json list = Json::array();
  for (const auto& [path, file] : engine_->views().files.files) {
    list.push_back({{"path", path},
                    {"size", file.size},
                    {"digest", file.digest},
                    {"stored", reducers::TimeRfc3339(file.stored.time_ns)},
                    {"stored_by", file.stored_by}});
  }
  respond(OkResponse(list.dump()));
}

void FileApi::Delete(const api::Request& request, Respond respond) {
  std::optional<api::Response> reject;
  const std::optional<std::string> path = PathParam(request, &reject);
  if (!path) {
    respond(std::move(*reject));
    return;
  }
  if (!engine_->views().files.files.contains(*path)) {
    respond(api::FailResponse(404, "no such file"));
    return;
  }
  engine_->Submit(*principal_, engine::DeleteFile{*path}, request.id,
                  [path = *path, respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? OkResponse(Json{{"path", path}}.dump())
                                       : FailedReplyResponse(reply));
                  });
}

}  // namespace cloister::cloisterd
