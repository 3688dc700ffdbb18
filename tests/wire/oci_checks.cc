#include "tests/wire/oci_checks.h"

#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kConfigType = "application/vnd.oci.image.config.v1+json";
constexpr const char* kLayerType = "application/vnd.oci.image.layer.v1.tar";
// The media types every manifest GET and HEAD accepts (distribution 2.8 answers 404 to a GET
// of an OCI manifest without a matching Accept).
constexpr const char* kAcceptManifests =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json\r\n";
constexpr const char* kOctetStream = "Content-Type: application/octet-stream\r\n";
// A large blob gets this long per megabyte (plus the ordinary timeout) to travel.
constexpr int kMsPerMiB = 500;

// "sha256:..." of a blob no check ever pushes.
std::string NeverPushed(std::string_view seed) {
  return Sha256Digest("never pushed: " + std::string(seed));
}

// A fresh repository name per call: "<prefix>/<check>-<pid>-<n>".
std::string Repo(const OciTarget& target, std::string_view check) {
  static std::atomic<int> counter{0};
  std::string name = std::string(check) + "-" + std::to_string(getpid()) + "-" +
                     std::to_string(counter++);
  return target.repo_prefix.empty() ? name : target.repo_prefix + "/" + name;
}

// size bytes determined by seed (a repository name and a role), different for every seed.
std::string Bytes(std::string_view seed, size_t size) {
  const std::string digest = Sha256Digest(seed);
  std::mt19937_64 random(std::stoull(digest.substr(7, 16), nullptr, 16));
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t word = random();
    std::memcpy(out.data() + i, &word, std::min<size_t>(8, size - i));
  }
  return out;
}

int LargeTimeoutMs(const OciTarget& target, size_t bytes) {
  return target.timeout_ms + static_cast<int>((bytes >> 20) * kMsPerMiB);
}

std::string HostHeader(const OciTarget& target) {
  return target.wire.host + ":" + std::to_string(target.wire.port);
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// For failure messages: the status line, the headers and the start of the body.
std::string Describe(const WireResponse& response) {
  std::string out = std::to_string(response.status) + " " + response.reason + "\n";
  for (const auto& [name, value] : response.headers) {
    out += name + ": " + value + "\n";
  }
  const std::string start = response.body.substr(0, 600);
  const bool text = std::all_of(start.begin(), start.end(), [](unsigned char c) {
    return c == '\n' || c == '\r' || c == '\t' || (c >= 0x20 && c < 0x7f);
  });
  return out + (text ? start : "(" + std::to_string(response.body.size()) + " bytes, binary)");
}

// Requires actual == expected without printing megabytes: the sizes and the first difference.
void RequireSameBytes(const std::string& actual, const std::string& expected) {
  size_t first_difference = 0;
  while (first_difference < std::min(actual.size(), expected.size()) &&
         actual[first_difference] == expected[first_difference]) {
    first_difference++;
  }
  INFO("received " << actual.size() << " bytes, expected " << expected.size()
                   << ", first difference at " << first_difference);
  REQUIRE((actual == expected));
}

// query appended to a request target that may already have one.
std::string AddQuery(const std::string& path, const std::string& query) {
  return path + (path.find('?') == std::string::npos ? "?" : "&") + query;
}

// One client of the registry: a keep-alive connection, reopened when the server closes it.
class Session {
 public:
  explicit Session(const OciTarget& target) : target_(target) {}

  const OciTarget& target() const { return target_; }

  // The exact bytes of a request: Host (the target's address), Authorization when set,
  // headers (each "Name: value\r\n"), and Content-Length unless content_length is false.
  std::string Build(std::string_view method, std::string_view path, std::string_view headers,
                    std::string_view body, bool content_length = true) const {
    std::string request = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: " +
                          HostHeader(target_) + "\r\n";
    if (!target_.authorization.empty()) {
      request += "Authorization: " + target_.authorization + "\r\n";
    }
    request += headers;
    const bool bodied = method == "POST" || method == "PUT" || method == "PATCH" ||
                        method == "DELETE" || !body.empty();
    if (content_length && bodied) {
      request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    return request + "\r\n" + std::string(body);
  }

  // Sends one request and reads its response within timeout_ms (0: target.timeout_ms). A
  // reused connection the server closed before answering is reopened once.
  WireResponse Do(std::string_view method, std::string_view path, std::string_view headers = "",
                  std::string_view body = "", int timeout_ms = 0) {
    const int timeout = timeout_ms > 0 ? timeout_ms : target_.timeout_ms;
    const std::string request = Build(method, path, headers, body);
    INFO(method << " " << path);
    for (int attempt = 0;; attempt++) {
      const bool reused = connection_ != nullptr;
      WireConnection& connection = Connection();
      Status sent = connection.Send(request, timeout);
      Result<WireResponse> response = sent.ok()
                                          ? connection.ReadResponse(timeout, method == "HEAD")
                                          : Result<WireResponse>(sent);
      if (!response.ok() && reused && attempt == 0 && connection.buffered().empty()) {
        connection_.reset();
        continue;
      }
      INFO(response.status().ToString());
      REQUIRE(response.ok());
      const std::string close = Lower(response->Header("Connection"));
      if (response->version_minor == 0 || close == "close") {
        connection_.reset();
      }
      return std::move(*response);
    }
  }

  WireConnection& Connection() {
    if (connection_ == nullptr) {
      auto connection = WireConnection::Connect(target_.wire, target_.timeout_ms);
      INFO("connect " << target_.wire.BaseUrl() << ": " << connection.status().ToString());
      REQUIRE(connection.ok());
      connection_ = std::move(*connection);
    }
    return *connection_;
  }

 private:
  const OciTarget& target_;
  std::unique_ptr<WireConnection> connection_;
};

// The request target for a Location or Link URL received in answer to a request for
// base_path: an absolute URL must name the target (its scheme and the Host the checks send);
// a relative one is resolved against base_path (no dot segments).
std::string Resolve(const OciTarget& target, const std::string& base_path,
                    const std::string& url) {
  INFO("URL \"" << url << "\" from a request for " << base_path);
  REQUIRE(!url.empty());
  const std::string scheme = target.wire.tls ? "https://" : "http://";
  const size_t scheme_end = url.find("://");
  const bool has_scheme = scheme_end != std::string::npos && scheme_end > 0 &&
                          url.find_first_of("/?#") > scheme_end;
  const size_t authority_start = has_scheme               ? scheme_end + 3
                                 : url.rfind("//", 0) == 0 ? 2
                                                           : 0;
  if (authority_start > 0) {
    REQUIRE((!has_scheme || url.rfind(scheme, 0) == 0));
    const size_t slash = url.find('/', authority_start);
    REQUIRE(slash != std::string::npos);
    REQUIRE(url.substr(authority_start, slash - authority_start) == HostHeader(target));
    return url.substr(slash);
  }
  if (url[0] == '/') {
    return url;
  }
  const std::string base = base_path.substr(0, base_path.find('?'));
  if (url[0] == '?') {
    return base + url;
  }
  return base.substr(0, base.rfind('/') + 1) + url;
}

// The response's Location, resolved; REQUIREs one.
std::string LocationOf(const OciTarget& target, const std::string& base_path,
                       const WireResponse& response) {
  INFO(Describe(response));
  REQUIRE(response.HasHeader("Location"));
  return Resolve(target, base_path, response.Header("Location"));
}

// The <end> of an upload's Range header "0-<end>" (spec v1.1; "bytes=0-<end>" in older texts
// is accepted too).
int64_t UploadRangeEnd(const WireResponse& response) {
  INFO(Describe(response));
  std::string range = response.Header("Range");
  if (range.rfind("bytes=", 0) == 0) {
    range = range.substr(6);
  }
  REQUIRE(range.rfind("0-", 0) == 0);
  REQUIRE(range.size() > 2);
  REQUIRE(range.find_first_not_of("0123456789", 2) == std::string::npos);
  return std::stoll(range.substr(2));
}

std::string BlobPath(const std::string& repo, const std::string& digest) {
  return "/v2/" + repo + "/blobs/" + digest;
}

std::string UploadsPath(const std::string& repo) { return "/v2/" + repo + "/blobs/uploads/"; }

std::string ManifestPath(const std::string& repo, const std::string& reference) {
  return "/v2/" + repo + "/manifests/" + reference;
}

struct Upload {
  std::string location;  // The request target of the upload session.
  size_t chunk_bytes_min = 0;  // OCI-Chunk-Min-Length, 0 if the server sets none.
};

// POST /v2/<repo>/blobs/uploads/ → 202 + Location.
Upload StartUpload(Session& session, const std::string& repo) {
  const std::string path = UploadsPath(repo);
  WireResponse response = session.Do("POST", path);
  INFO(Describe(response));
  REQUIRE(response.status == 202);
  Upload upload;
  upload.location = LocationOf(session.target(), path, response);
  const std::string chunk_min = response.Header("OCI-Chunk-Min-Length");
  if (!chunk_min.empty()) {
    upload.chunk_bytes_min = std::stoull(chunk_min);
  }
  return upload;
}

// Requires a 201 for a finished blob upload of digest: Location and Docker-Content-Digest.
// Returns the Location, resolved.
std::string RequireBlobCreated(const OciTarget& target, const std::string& base_path,
                               const WireResponse& response, const std::string& digest) {
  INFO(Describe(response));
  REQUIRE(response.status == 201);
  REQUIRE(response.Header("Docker-Content-Digest") == digest);
  return LocationOf(target, base_path, response);
}

// PUT <location>?digest=<digest> with bytes → 201; returns the blob's Location, resolved.
std::string FinishUpload(Session& session, const std::string& location, const std::string& digest,
                         const std::string& bytes) {
  const std::string path = AddQuery(location, "digest=" + digest);
  WireResponse response =
      session.Do("PUT", path, kOctetStream, bytes, LargeTimeoutMs(session.target(), bytes.size()));
  return RequireBlobCreated(session.target(), path, response, digest);
}

// A monolithic upload (POST, then PUT with the bytes); returns the digest.
std::string PushBlob(Session& session, const std::string& repo, const std::string& bytes) {
  const std::string digest = Sha256Digest(bytes);
  FinishUpload(session, StartUpload(session, repo).location, digest, bytes);
  return digest;
}

// HEAD → 200 with Content-Length and Docker-Content-Digest; GET → 200 and the bytes.
void RequireBlob(Session& session, const std::string& repo, const std::string& digest,
                 const std::string& bytes) {
  const std::string path = BlobPath(repo, digest);
  WireResponse head = session.Do("HEAD", path);
  {
    INFO("HEAD " << path << "\n" << Describe(head));
    REQUIRE(head.status == 200);
    REQUIRE(head.Header("Content-Length") == std::to_string(bytes.size()));
    REQUIRE(head.Header("Docker-Content-Digest") == digest);
  }
  WireResponse get =
      session.Do("GET", path, "", "", LargeTimeoutMs(session.target(), bytes.size()));
  INFO("GET " << path << "\n" << Describe(get));
  REQUIRE(get.status == 200);
  if (get.HasHeader("Docker-Content-Digest")) {
    REQUIRE(get.Header("Docker-Content-Digest") == digest);
  }
  RequireSameBytes(get.body, bytes);
}

void RequireNoBlob(Session& session, const std::string& repo, const std::string& digest) {
  WireResponse head = session.Do("HEAD", BlobPath(repo, digest));
  INFO("HEAD " << BlobPath(repo, digest) << "\n" << Describe(head));
  REQUIRE(head.status == 404);
}

// A PATCH of bytes at offset to an upload → 202, Location (kept in *location) and
// Range 0-<offset + size - 1>.
void PatchChunk(Session& session, std::string* location, size_t offset, const std::string& bytes) {
  const std::string range =
      std::to_string(offset) + "-" + std::to_string(offset + bytes.size() - 1);
  WireResponse response = session.Do(
      "PATCH", *location, std::string(kOctetStream) + "Content-Range: " + range + "\r\n", bytes);
  INFO("PATCH " << range << "\n" << Describe(response));
  REQUIRE(response.status == 202);
  *location = LocationOf(session.target(), *location, response);
  REQUIRE(UploadRangeEnd(response) == static_cast<int64_t>(offset + bytes.size() - 1));
}

// GET on an upload → 204, Location (kept in *location) and Range 0-<end>; returns end.
int64_t UploadStatus(Session& session, std::string* location) {
  WireResponse response = session.Do("GET", *location);
  INFO("GET " << *location << "\n" << Describe(response));
  REQUIRE(response.status == 204);
  *location = LocationOf(session.target(), *location, response);
  return UploadRangeEnd(response);
}

// An image pushed blob by blob (its config and one layer), and its manifest (not pushed).
struct Image {
  std::string config;
  std::string layer;
  std::string manifest;  // The exact bytes to PUT.
  std::string digest;    // Of manifest.
};

// The manifest of an image whose config and layer are given (not pushed here).
Image MakeImage(const std::string& seed, std::string layer) {
  Image image;
  image.layer = std::move(layer);
  const std::string layer_digest = Sha256Digest(image.layer);
  Json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"config", {{"Labels", {{"dev.cloister.oci-check", seed}}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {layer_digest}}}}};
  image.config = config.dump();
  Json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kManifestType},
      {"config",
       {{"mediaType", kConfigType},
        {"digest", Sha256Digest(image.config)},
        {"size", image.config.size()}}},
      {"layers",
       {{{"mediaType", kLayerType}, {"digest", layer_digest}, {"size", image.layer.size()}}}}};
  image.manifest = manifest.dump();
  image.digest = Sha256Digest(image.manifest);
  return image;
}

// MakeImage with its config and layer pushed to repo.
Image PushImageBlobs(Session& session, const std::string& repo, const std::string& seed,
                     size_t layer_bytes = 4096) {
  Image image = MakeImage(seed, Bytes(repo + "/" + seed + "/layer", layer_bytes));
  PushBlob(session, repo, image.config);
  PushBlob(session, repo, image.layer);
  return image;
}

WireResponse PutManifest(Session& session, const std::string& repo, const std::string& reference,
                         const std::string& media_type, const std::string& body) {
  return session.Do("PUT", ManifestPath(repo, reference),
                    "Content-Type: " + media_type + "\r\n", body);
}

// PUT of a manifest → 201, Docker-Content-Digest (the body's SHA-256) and Location; returns
// the Location, resolved.
std::string RequireManifestPut(Session& session, const std::string& repo,
                               const std::string& reference, const std::string& media_type,
                               const std::string& body) {
  WireResponse response = PutManifest(session, repo, reference, media_type, body);
  INFO("PUT manifest " << reference << "\n" << Describe(response));
  REQUIRE(response.status == 201);
  REQUIRE(response.Header("Docker-Content-Digest") == Sha256Digest(body));
  return LocationOf(session.target(), ManifestPath(repo, reference), response);
}

// GET and HEAD of path with Accept → 200, Content-Type media_type, Docker-Content-Digest and
// the body (HEAD: its Content-Length).
void RequireManifestAt(Session& session, const std::string& path, const std::string& media_type,
                       const std::string& body) {
  WireResponse get = session.Do("GET", path, kAcceptManifests);
  {
    INFO("GET " << path << "\n" << Describe(get));
    REQUIRE(get.status == 200);
    REQUIRE(get.Header("Content-Type") == media_type);
    REQUIRE(get.Header("Docker-Content-Digest") == Sha256Digest(body));
    RequireSameBytes(get.body, body);
  }
  WireResponse head = session.Do("HEAD", path, kAcceptManifests);
  INFO("HEAD " << path << "\n" << Describe(head));
  REQUIRE(head.status == 200);
  REQUIRE(head.Header("Content-Type") == media_type);
  REQUIRE(head.Header("Docker-Content-Digest") == Sha256Digest(body));
  REQUIRE(head.Header("Content-Length") == std::to_string(body.size()));
}

// GET of a manifest reference → 404 MANIFEST_UNKNOWN.
void RequireNoManifest(Session& session, const std::string& repo, const std::string& reference) {
  WireResponse response = session.Do("GET", ManifestPath(repo, reference), kAcceptManifests);
  INFO("GET manifest " << reference);
  RequireOciError(response, 404, {"MANIFEST_UNKNOWN"});
}

// Requires the OCI error body, for any status.
void RequireErrorBody(const WireResponse& response,
                      std::initializer_list<std::string_view> codes) {
  INFO(Describe(response));
  const Json body = Json::parse(response.body, nullptr, false);
  REQUIRE(body.is_object());
  REQUIRE(body.contains("errors"));
  REQUIRE(body["errors"].is_array());
  REQUIRE(!body["errors"].empty());
  bool found = codes.size() == 0;
  for (const Json& error : body["errors"]) {
    REQUIRE(error.is_object());
    REQUIRE(error.contains("code"));
    REQUIRE(error["code"].is_string());
    if (error.contains("message")) {
      REQUIRE(error["message"].is_string());
    }
    const std::string code = error["code"].get<std::string>();
    found = found || std::find(codes.begin(), codes.end(), code) != codes.end();
  }
  REQUIRE(found);
}

// The tags of a tags/list answer for repo (200, {"name": repo, "tags": [...]}).
std::vector<std::string> TagsOf(const WireResponse& response, const std::string& repo) {
  INFO(Describe(response));
  REQUIRE(response.status == 200);
  const Json body = Json::parse(response.body, nullptr, false);
  REQUIRE(body.is_object());
  REQUIRE(body.value("name", "") == repo);
  std::vector<std::string> tags;
  if (body.contains("tags") && !body["tags"].is_null()) {
    REQUIRE(body["tags"].is_array());
    for (const Json& tag : body["tags"]) {
      REQUIRE(tag.is_string());
      tags.push_back(tag.get<std::string>());
    }
  }
  return tags;
}

// The URL of a Link header '<url>; rel="next"', or "" without one.
std::string NextLink(const WireResponse& response) {
  const std::string link = response.Header("Link");
  if (link.empty()) {
    return "";
  }
  INFO("Link: " << link);
  const size_t close = link.find('>');
  REQUIRE(link[0] == '<');
  REQUIRE(close != std::string::npos);
  REQUIRE(link.find("rel=\"next\"", close) != std::string::npos);
  return link.substr(1, close - 1);
}

// Follows ?n=2 and the Link headers to the end; returns every tag in the order received.
std::vector<std::string> PaginateTags(Session& session, const std::string& repo,
                                      const std::vector<std::string>& all) {
  std::vector<std::string> seen;
  std::string path = "/v2/" + repo + "/tags/list?n=2";
  for (size_t page = 0; page <= all.size(); page++) {
    WireResponse response = session.Do("GET", path);
    const std::vector<std::string> tags = TagsOf(response, repo);
    const std::string next = NextLink(response);
    INFO("page " << page << " " << path << "\n" << Describe(response));
    REQUIRE(tags.size() <= 2);
    seen.insert(seen.end(), tags.begin(), tags.end());
    if (next.empty()) {
      return seen;
    }
    REQUIRE(tags.size() == 2);
    REQUIRE(next.find("n=2") != std::string::npos);
    REQUIRE(next.find("last=") != std::string::npos);
    path = Resolve(session.target(), path, next);
  }
  FAIL("more pages than tags: " << seen.size() << " tags seen");
  return seen;
}

}  // namespace

std::string Sha256Digest(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  const int ok = EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  REQUIRE(ok == 1);
  std::string out = "sha256:";
  for (unsigned int i = 0; i < size; i++) {
    char hex[3];
    std::snprintf(hex, sizeof(hex), "%02x", digest[i]);
    out += hex;
  }
  return out;
}

void RequireOciError(const WireResponse& response, int status,
                     std::initializer_list<std::string_view> codes) {
  INFO(Describe(response));
  REQUIRE(response.status == status);
  RequireErrorBody(response, codes);
}

void CheckApiVersion(const OciTarget& target) {
  Session session(target);
  WireResponse response = session.Do("GET", "/v2/");
  INFO(Describe(response));
  REQUIRE(response.status == 200);
}

void CheckAuthChallenge(const OciTarget& target, bool auth_required) {
  OciTarget anonymous = target;
  anonymous.authorization.clear();
  Session session(anonymous);
  if (!auth_required) {
    WireResponse response = session.Do("GET", "/v2/");
    INFO(Describe(response));
    REQUIRE(response.status == 200);
    return;
  }
  const std::string tags = "/v2/" + Repo(target, "auth") + "/tags/list";
  // "cloister-oci-check:wrong" in Basic form: a credential no registry accepts.
  const std::string wrong = "Authorization: Basic Y2xvaXN0ZXItb2NpLWNoZWNrOndyb25n\r\n";
  for (const auto& [path, headers] : std::vector<std::pair<std::string, std::string>>{
           {"/v2/", ""}, {tags, ""}, {"/v2/", wrong}, {tags, wrong}}) {
    WireResponse response = session.Do("GET", path, headers);
    INFO("GET " << path << " " << headers);
    RequireOciError(response, 401, {"UNAUTHORIZED"});
    REQUIRE(!response.Header("WWW-Authenticate").empty());
  }
}

void CheckMonolithicUpload(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "monolithic");
  const std::string bytes = Bytes(repo, (256 << 10) + 17);
  const std::string digest = Sha256Digest(bytes);
  const std::string location =
      FinishUpload(session, StartUpload(session, repo).location, digest, bytes);
  RequireBlob(session, repo, digest, bytes);

  WireResponse at_location = session.Do("GET", location);
  {
    INFO("GET " << location << "\n" << Describe(at_location));
    REQUIRE(at_location.status == 200);
    RequireSameBytes(at_location.body, bytes);
  }
  WireResponse range = session.Do("GET", BlobPath(repo, digest), "Range: bytes=1000-1999\r\n");
  INFO("GET Range: bytes=1000-1999\n" << Describe(range));
  REQUIRE(range.status == 206);
  REQUIRE(range.Header("Content-Range") ==
          "bytes 1000-1999/" + std::to_string(bytes.size()));
  RequireSameBytes(range.body, bytes.substr(1000, 1000));
}

void CheckSinglePostUpload(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "single-post");
  const std::string bytes = Bytes(repo, 70000);
  const std::string digest = Sha256Digest(bytes);
  const std::string path = AddQuery(UploadsPath(repo), "digest=" + digest);
  WireResponse response = session.Do("POST", path, kOctetStream, bytes);
  INFO("POST " << path << "\n" << Describe(response));
  if (response.status == 202) {
    // The spec lets a registry without single-POST uploads answer 202: the PUT then finishes.
    FinishUpload(session, LocationOf(target, path, response), digest, bytes);
  } else {
    RequireBlobCreated(target, path, response, digest);
  }
  RequireBlob(session, repo, digest, bytes);
}

void CheckBlobUnknown(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "unknown-blob");
  PushBlob(session, repo, Bytes(repo, 100));  // The repository exists; the blob does not.
  const std::string path = BlobPath(repo, NeverPushed(repo));
  WireResponse head = session.Do("HEAD", path);
  {
    INFO("HEAD " << path << "\n" << Describe(head));
    REQUIRE(head.status == 404);
  }
  RequireOciError(session.Do("GET", path), 404, {"BLOB_UNKNOWN"});
}

void CheckChunkedUpload(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "chunked");
  for (const bool last_chunk_in_put : {true, false}) {
    INFO((last_chunk_in_put ? "last chunk in the PUT" : "every chunk PATCHed, empty PUT"));
    Upload upload = StartUpload(session, repo);
    const size_t chunk = std::max<size_t>(upload.chunk_bytes_min, 64 << 10);
    const std::string bytes = Bytes(repo + (last_chunk_in_put ? "/put" : "/patch"),
                                    3 * chunk + 1234);
    const std::string digest = Sha256Digest(bytes);
    size_t offset = 0;
    for (; offset + chunk < bytes.size(); offset += chunk) {
      PatchChunk(session, &upload.location, offset, bytes.substr(offset, chunk));
      REQUIRE(UploadStatus(session, &upload.location) ==
              static_cast<int64_t>(offset + chunk - 1));
    }
    std::string headers;
    std::string last;
    if (last_chunk_in_put) {
      last = bytes.substr(offset);
      headers = std::string(kOctetStream) + "Content-Range: " + std::to_string(offset) + "-" +
                std::to_string(bytes.size() - 1) + "\r\n";
    } else {
      PatchChunk(session, &upload.location, offset, bytes.substr(offset));
    }
    const std::string path = AddQuery(upload.location, "digest=" + digest);
    RequireBlobCreated(target, path, session.Do("PUT", path, headers, last), digest);
    RequireBlob(session, repo, digest, bytes);
  }
}

void CheckChunkOutOfOrder(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "out-of-order");
  const std::string bytes = Bytes(repo, 3000);
  Upload upload = StartUpload(session, repo);
  PatchChunk(session, &upload.location, 0, bytes.substr(0, 1000));
  // Bytes 2000..2999 where 1000..1999 are due.
  WireResponse response =
      session.Do("PATCH", upload.location,
                 std::string(kOctetStream) + "Content-Range: 2000-2999\r\n", bytes.substr(2000));
  INFO("out-of-order PATCH\n" << Describe(response));
  if (response.status == 202) {
    // distribution 2.8 ignores Content-Range and appends the chunk at 1000.
    REQUIRE(target.allow_legacy);
    upload.location = LocationOf(target, upload.location, response);
    WireResponse cancel = session.Do("DELETE", upload.location);
    INFO("DELETE " << upload.location << "\n" << Describe(cancel));
    REQUIRE(cancel.status == 204);
    return;
  }
  REQUIRE(response.status == 416);
  if (response.HasHeader("Range")) {
    REQUIRE(UploadRangeEnd(response) == 999);
  }
  if (response.HasHeader("Location")) {
    upload.location = LocationOf(target, upload.location, response);
  }
  REQUIRE(UploadStatus(session, &upload.location) == 999);
  PatchChunk(session, &upload.location, 1000, bytes.substr(1000));
  const std::string digest = Sha256Digest(bytes);
  const std::string path = AddQuery(upload.location, "digest=" + digest);
  RequireBlobCreated(target, path, session.Do("PUT", path), digest);
  RequireBlob(session, repo, digest, bytes);
}

void CheckDigestMismatch(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "mismatch");
  PushBlob(session, repo, Bytes(repo + "/other", 100));  // The repository exists.
  const std::string bytes = Bytes(repo, 5000);
  const std::string claimed = NeverPushed(repo);
  const std::string path = AddQuery(StartUpload(session, repo).location, "digest=" + claimed);
  RequireOciError(session.Do("PUT", path, kOctetStream, bytes), 400, {"DIGEST_INVALID"});
  RequireNoBlob(session, repo, claimed);
  RequireNoBlob(session, repo, Sha256Digest(bytes));
}

void CheckInvalidDigest(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "invalid-digest");
  PushBlob(session, repo, Bytes(repo + "/other", 100));  // The repository exists.
  const std::string bytes = Bytes(repo, 500);
  for (const std::string digest : {"sha256:zz", "nonsense", "sha256:"}) {
    INFO("digest=" << digest);
    const std::string path = AddQuery(StartUpload(session, repo).location, "digest=" + digest);
    RequireOciError(session.Do("PUT", path, kOctetStream, bytes), 400, {"DIGEST_INVALID"});
  }
  RequireNoBlob(session, repo, Sha256Digest(bytes));
}

void CheckTruncatedUpload(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "truncated");
  const std::string bytes = Bytes(repo, 200000);
  const std::string digest = Sha256Digest(bytes);
  const std::string path = AddQuery(StartUpload(session, repo).location, "digest=" + digest);
  {
    auto connection = WireConnection::Connect(target.wire, target.timeout_ms);
    REQUIRE(connection.ok());
    const std::string head = session.Build(
        "PUT", path,
        std::string(kOctetStream) + "Content-Length: " + std::to_string(bytes.size()) + "\r\n",
        "", /*content_length=*/false);
    Status sent = (*connection)->Send(head + bytes.substr(0, bytes.size() / 2));
    INFO(sent.ToString());
    REQUIRE(sent.ok());
    // Let the server take in the half body before the connection closes under it.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  RequireNoBlob(session, repo, digest);
  REQUIRE(PushBlob(session, repo, bytes) == digest);
  RequireBlob(session, repo, digest, bytes);
}

void CheckCancelUpload(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "cancel");
  const std::string bytes = Bytes(repo, 1000);
  Upload upload = StartUpload(session, repo);
  PatchChunk(session, &upload.location, 0, bytes);
  WireResponse cancel = session.Do("DELETE", upload.location);
  {
    INFO("DELETE " << upload.location << "\n" << Describe(cancel));
    REQUIRE(cancel.status == 204);
  }
  RequireOciError(session.Do("GET", upload.location), 404, {"BLOB_UPLOAD_UNKNOWN"});
  RequireOciError(session.Do("PATCH", upload.location,
                             std::string(kOctetStream) + "Content-Range: 1000-1999\r\n", bytes),
                  404, {"BLOB_UPLOAD_UNKNOWN"});
  RequireNoBlob(session, repo, Sha256Digest(bytes));
}

void CheckCrossRepositoryMount(const OciTarget& target) {
  Session session(target);
  const std::string from = Repo(target, "mount-from");
  const std::string to = Repo(target, "mount-to");
  const std::string bytes = Bytes(from, 30000);
  const std::string digest = PushBlob(session, from, bytes);

  const std::string mount = UploadsPath(to) + "?mount=" + digest + "&from=" + from;
  RequireBlobCreated(target, mount, session.Do("POST", mount), digest);
  RequireBlob(session, to, digest, bytes);

  // Unknown blob: a new upload, which then completes.
  const std::string other = Bytes(to + "/unmounted", 3000);
  const std::string unknown =
      UploadsPath(to) + "?mount=" + Sha256Digest(other) + "&from=" + from;
  WireResponse fallback = session.Do("POST", unknown);
  {
    INFO("POST " << unknown << "\n" << Describe(fallback));
    REQUIRE(fallback.status == 202);
  }
  FinishUpload(session, LocationOf(target, unknown, fallback), Sha256Digest(other), other);
  RequireBlob(session, to, Sha256Digest(other), other);

  // A held blob named from an unknown repository: a new upload (cancelled here), or a mount,
  // which the spec allows ("from" MAY be treated as optional).
  const std::string elsewhere = Repo(target, "mount-elsewhere");
  const std::string nowhere =
      UploadsPath(elsewhere) + "?mount=" + digest + "&from=" + Repo(target, "mount-none");
  WireResponse none = session.Do("POST", nowhere);
  INFO("POST " << nowhere << "\n" << Describe(none));
  if (none.status == 201) {
    RequireBlobCreated(target, nowhere, none, digest);
    RequireBlob(session, elsewhere, digest, bytes);
    return;
  }
  REQUIRE(none.status == 202);
  REQUIRE(session.Do("DELETE", LocationOf(target, nowhere, none)).status == 204);
}

void CheckManifestPushPull(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "manifest");
  const Image image = PushImageBlobs(session, repo, "v1");
  const std::string location = RequireManifestPut(session, repo, "v1", kManifestType,
                                                  image.manifest);
  RequireManifestAt(session, ManifestPath(repo, "v1"), kManifestType, image.manifest);
  RequireManifestAt(session, ManifestPath(repo, image.digest), kManifestType, image.manifest);
  RequireManifestAt(session, location, kManifestType, image.manifest);
  // The same bytes again, by digest: idempotent.
  RequireManifestPut(session, repo, image.digest, kManifestType, image.manifest);
  RequireManifestAt(session, ManifestPath(repo, image.digest), kManifestType, image.manifest);
  // The blobs it references stay served.
  RequireBlob(session, repo, Sha256Digest(image.layer), image.layer);
}

void CheckManifestErrors(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "manifest-errors");
  const Image image = PushImageBlobs(session, repo, "good");
  RequireManifestPut(session, repo, "good", kManifestType, image.manifest);

  // Its layer never pushed; the config is.
  Image dangling = MakeImage("dangling", Bytes(repo + "/dangling", 999));
  PushBlob(session, repo, dangling.config);
  RequireOciError(PutManifest(session, repo, "dangling", kManifestType, dangling.manifest), 400,
                  {"MANIFEST_BLOB_UNKNOWN"});
  RequireNoManifest(session, repo, "dangling");
  RequireNoManifest(session, repo, dangling.digest);

  RequireNoManifest(session, repo, "no-such-tag");
  RequireNoManifest(session, repo, NeverPushed(repo));

  RequireOciError(PutManifest(session, repo, "malformed", kManifestType, "{\"schemaVersion\":2,"),
                  400, {"MANIFEST_INVALID"});
  RequireNoManifest(session, repo, "malformed");

  // A valid manifest PUT by a digest that is not its own.
  const Image other = PushImageBlobs(session, repo, "other");
  RequireOciError(PutManifest(session, repo, image.digest, kManifestType, other.manifest), 400,
                  {"DIGEST_INVALID", "MANIFEST_INVALID"});
  RequireNoManifest(session, repo, other.digest);
  RequireManifestAt(session, ManifestPath(repo, image.digest), kManifestType, image.manifest);
}

void CheckImageIndex(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "index");
  Json manifests = Json::array();
  std::vector<Image> children;
  for (const char* architecture : {"amd64", "arm64"}) {
    children.push_back(PushImageBlobs(session, repo, architecture));
    const Image& child = children.back();
    RequireManifestPut(session, repo, child.digest, kManifestType, child.manifest);
    manifests.push_back({{"mediaType", kManifestType},
                         {"digest", child.digest},
                         {"size", child.manifest.size()},
                         {"platform", {{"architecture", architecture}, {"os", "linux"}}}});
  }
  const Json index_json = {
      {"schemaVersion", 2}, {"mediaType", kIndexType}, {"manifests", manifests}};
  const std::string index = index_json.dump();
  RequireManifestPut(session, repo, "multi", kIndexType, index);
  RequireManifestAt(session, ManifestPath(repo, "multi"), kIndexType, index);
  RequireManifestAt(session, ManifestPath(repo, Sha256Digest(index)), kIndexType, index);
  for (const Image& child : children) {
    RequireManifestAt(session, ManifestPath(repo, child.digest), kManifestType, child.manifest);
  }
}

void CheckTagsList(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "tags");
  const Image image = PushImageBlobs(session, repo, "tags");
  std::vector<std::string> all = {"t-c", "t-a", "t-e", "t-b", "t-d"};
  for (const std::string& tag : all) {
    RequireManifestPut(session, repo, tag, kManifestType, image.manifest);
  }
  std::sort(all.begin(), all.end());

  std::vector<std::string> listed = TagsOf(session.Do("GET", "/v2/" + repo + "/tags/list"), repo);
  const bool sorted = std::is_sorted(listed.begin(), listed.end());
  INFO("tags listed: " << Json(listed).dump());
  std::sort(listed.begin(), listed.end());
  REQUIRE(listed == all);
  REQUIRE((sorted || target.allow_legacy));

  WireResponse first = session.Do("GET", "/v2/" + repo + "/tags/list?n=2");
  if (TagsOf(first, repo).size() > 2) {
    // distribution 2.8 ignores n and last: every tag, and no Link.
    INFO(Describe(first));
    REQUIRE(target.allow_legacy);
    REQUIRE(NextLink(first).empty());
  } else {
    REQUIRE(sorted);
    REQUIRE(PaginateTags(session, repo, all) == all);
    const WireResponse after =
        session.Do("GET", "/v2/" + repo + "/tags/list?n=2&last=t-b");
    REQUIRE(TagsOf(after, repo) == std::vector<std::string>{"t-c", "t-d"});
  }
  RequireOciError(session.Do("GET", "/v2/" + Repo(target, "no-such-repo") + "/tags/list"), 404,
                  {"NAME_UNKNOWN"});
}

void CheckManifestDelete(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "delete");
  const Image image = PushImageBlobs(session, repo, "doomed");
  RequireManifestPut(session, repo, "doomed", kManifestType, image.manifest);
  RequireManifestAt(session, ManifestPath(repo, "doomed"), kManifestType, image.manifest);

  WireResponse deleted = session.Do("DELETE", ManifestPath(repo, image.digest));
  {
    INFO("DELETE manifest\n" << Describe(deleted));
    REQUIRE(deleted.status == 202);
  }
  RequireNoManifest(session, repo, image.digest);
  RequireNoManifest(session, repo, "doomed");
  WireResponse head = session.Do("HEAD", ManifestPath(repo, image.digest), kAcceptManifests);
  {
    INFO("HEAD deleted manifest\n" << Describe(head));
    REQUIRE(head.status == 404);
  }
  RequireOciError(session.Do("DELETE", ManifestPath(repo, image.digest)), 404,
                  {"MANIFEST_UNKNOWN"});
}

void CheckDeleteDuringPull(const OciTarget& target, size_t blob_bytes) {
  Session session(target);
  const std::string repo = Repo(target, "delete-during-pull");
  const Image image = PushImageBlobs(session, repo, "big", blob_bytes);
  const std::string layer_digest = Sha256Digest(image.layer);
  RequireManifestPut(session, repo, "big", kManifestType, image.manifest);

  auto reader = WireConnection::Connect(target.wire, target.timeout_ms);
  REQUIRE(reader.ok());
  // A small receive buffer keeps the server blocked mid-body while the reader does not read.
  const int buffer_bytes = 64 << 10;
  setsockopt((*reader)->fd(), SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof(buffer_bytes));
  REQUIRE((*reader)->Send(session.Build("GET", BlobPath(repo, layer_digest), "", "")).ok());
  pollfd readable{(*reader)->fd(), POLLIN, 0};
  REQUIRE(poll(&readable, 1, target.timeout_ms) == 1);  // The answer has begun.

  WireResponse manifest = session.Do("DELETE", ManifestPath(repo, image.digest));
  {
    INFO("DELETE manifest\n" << Describe(manifest));
    REQUIRE(manifest.status == 202);
  }
  WireResponse blob = session.Do("DELETE", BlobPath(repo, layer_digest));
  {
    INFO("DELETE blob\n" << Describe(blob));
    REQUIRE((blob.status == 202 || blob.status == 405));
    if (blob.status == 405) {
      RequireErrorBody(blob, {"UNSUPPORTED"});
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  auto pulled = (*reader)->ReadResponse(LargeTimeoutMs(target, blob_bytes));
  INFO(pulled.status().ToString());
  REQUIRE(pulled.ok());
  {
    INFO(Describe(*pulled));
    REQUIRE(pulled->status == 200);
  }
  RequireSameBytes(pulled->body, image.layer);
  RequireNoManifest(session, repo, image.digest);
  RequireNoManifest(session, repo, "big");
  if (blob.status == 202) {
    RequireNoBlob(session, repo, layer_digest);
  }
}

void CheckTagImmutability(const OciTarget& target) {
  Session session(target);
  const std::string repo = Repo(target, "immutability");
  const Image first = PushImageBlobs(session, repo, "first");
  const Image second = PushImageBlobs(session, repo, "second");
  RequireManifestPut(session, repo, "stable", kManifestType, first.manifest);
  RequireManifestPut(session, repo, "stable", kManifestType, first.manifest);  // Idempotent.

  WireResponse moved = PutManifest(session, repo, "stable", kManifestType, second.manifest);
  INFO("PUT stable → second manifest\n" << Describe(moved));
  if (target.immutable_tags) {
    REQUIRE(moved.status >= 400);
    REQUIRE(moved.status < 500);
    RequireErrorBody(moved, {});
    RequireManifestAt(session, ManifestPath(repo, "stable"), kManifestType, first.manifest);
  } else {
    REQUIRE(moved.status == 201);
    REQUIRE(moved.Header("Docker-Content-Digest") == second.digest);
    RequireManifestAt(session, ManifestPath(repo, "stable"), kManifestType, second.manifest);
  }
  RequireManifestAt(session, ManifestPath(repo, first.digest), kManifestType, first.manifest);
}

}  // namespace cloister::testing
