#include "client/registry_client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "client/url_text.h"

namespace cloister::client {

using Json = nlohmann::json;

namespace {

constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
// Bodies at least this large ask for "100 Continue" first, so that a refusal (401, 404) does not
// cost the whole body; smaller ones go at once (one round trip less).
constexpr uint64_t kExpectContinueBytesMin = 1ull << 20;
constexpr size_t kReadBufferBytes = 64 << 10;

// ---- Small helpers ----

std::string ErrnoText(int error) { return std::strerror(error); }

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

std::string ToLower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return text;
}

std::string Trim(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && (text[begin] == ' ' || text[begin] == '\t')) {
    begin++;
  }
  while (end > begin && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r' ||
                         text[end - 1] == '\n')) {
    end--;
  }
  return std::string(text.substr(begin, end - begin));
}

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string UrlEncode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (IsLowerAlnum(static_cast<char>(c)) || (c >= 'A' && c <= 'Z') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string AppendQuery(const std::string& url, const std::string& parameter) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + parameter;
}

// ---- SHA-256 ----

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { Reset(); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Reset() { CL_ASSERT(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1); }
  void Update(const void* data, size_t bytes) {
    CL_ASSERT(EVP_DigestUpdate(ctx_, data, bytes) == 1);
  }
  // "sha256:<hex>" of the bytes so far; the object must be Reset before further use.
  std::string Digest() { return Final(ctx_); }
  // The same, leaving the object as it was (more bytes may follow).
  std::string Peek() const {
    EVP_MD_CTX* copy = EVP_MD_CTX_new();
    CL_ASSERT(copy != nullptr);
    CL_ASSERT(EVP_MD_CTX_copy_ex(copy, ctx_) == 1);
    std::string digest = Final(copy);
    EVP_MD_CTX_free(copy);
    return digest;
  }

 private:
  static std::string Final(EVP_MD_CTX* ctx) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    CL_ASSERT(EVP_DigestFinal_ex(ctx, md, &length) == 1);
    CL_ASSERT(length == 32);
    static const char kHex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned int i = 0; i < length; i++) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 15];
    }
    return out;
  }

  EVP_MD_CTX* ctx_;
};

// Hashes the first bytes of the file open at fd (from offset 0) into *sha; kIoError if it holds
// fewer.
Status HashFilePrefix(int fd, uint64_t bytes, Sha256* sha, const std::string& path) {
  std::string buffer(kReadBufferBytes, '\0');
  uint64_t done = 0;
  while (done < bytes) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), bytes - done));
    const ssize_t got = pread(fd, buffer.data(), want, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      return Status::IoError("read " + path + ": " +
                             (got < 0 ? ErrnoText(errno) : std::string("file shrank")));
    }
    sha->Update(buffer.data(), static_cast<size_t>(got));
    done += static_cast<uint64_t>(got);
  }
  return Status::Ok();
}

// The digest of the whole file at path, or an error.
Result<std::string> DigestOfFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound(path + ": no such file")
                           : Status::IoError("open " + path + ": " + ErrnoText(errno));
  }
  struct stat st {};
  Status hashed = fstat(fd, &st) == 0 ? Status::Ok()
                                      : Status::IoError("stat " + path + ": " + ErrnoText(errno));
  Sha256 sha;
  if (hashed.ok()) {
    hashed = HashFilePrefix(fd, static_cast<uint64_t>(st.st_size), &sha, path);
  }
  close(fd);
  if (!hashed.ok()) {
    return hashed;
  }
  return sha.Digest();
}

// ---- Files ----

Result<std::string> ReadSmallFile(const std::string& path, uint64_t bytes_max) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound(path + ": no such file")
                           : Status::IoError("open " + path + ": " + ErrnoText(errno));
  }
  std::string text;
  char buffer[16 << 10];
  Status status;
  while (true) {
    const ssize_t got = read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      status = Status::IoError("read " + path + ": " + ErrnoText(errno));
      break;
    }
    if (got == 0) {
      break;
    }
    text.append(buffer, static_cast<size_t>(got));
    if (text.size() > bytes_max) {
      status = Status::InvalidArgument(path + ": larger than " + std::to_string(bytes_max) +
                                       " bytes");
      break;
    }
  }
  close(fd);
  if (!status.ok()) {
    return status;
  }
  return text;
}

Status WriteAll(int fd, const char* data, size_t bytes, const std::string& path) {
  while (bytes > 0) {
    const ssize_t wrote = write(fd, data, bytes);
    if (wrote < 0 && errno == EINTR) {
      continue;
    }
    if (wrote < 0) {
      return errno == ENOSPC ? Status::NoSpace("write " + path + ": " + ErrnoText(errno))
                             : Status::IoError("write " + path + ": " + ErrnoText(errno));
    }
    data += wrote;
    bytes -= static_cast<size_t>(wrote);
  }
  return Status::Ok();
}

Status SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IoError("open " + dir + ": " + ErrnoText(errno));
  }
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  return rc == 0 ? Status::Ok() : Status::IoError("fsync " + dir + ": " + ErrnoText(error));
}

Status SyncFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IoError("open " + path + ": " + ErrnoText(errno));
  }
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  return rc == 0 ? Status::Ok() : Status::IoError("fsync " + path + ": " + ErrnoText(error));
}

// Writes bytes to path through a temporary file, fsynced and renamed into place.
Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string temporary = path + ".tmp" + std::to_string(getpid());
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::IoError("create " + temporary + ": " + ErrnoText(errno));
  }
  Status status = WriteAll(fd, bytes.data(), bytes.size(), temporary);
  if (status.ok() && fsync(fd) != 0) {
    status = Status::IoError("fsync " + temporary + ": " + ErrnoText(errno));
  }
  close(fd);
  if (status.ok() && rename(temporary.c_str(), path.c_str()) != 0) {
    status = Status::IoError("rename " + temporary + ": " + ErrnoText(errno));
  }
  if (!status.ok()) {
    unlink(temporary.c_str());
  }
  return status;
}

Status MakeDirectories(const std::string& dir) {
  std::string partial;
  size_t start = 0;
  while (start <= dir.size()) {
    size_t slash = dir.find('/', start);
    if (slash == std::string::npos) {
      slash = dir.size();
    }
    partial = dir.substr(0, slash);
    if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::IoError("mkdir " + partial + ": " + ErrnoText(errno));
    }
    start = slash + 1;
  }
  return Status::Ok();
}

// ---- Manifests ----

enum class ManifestKind { kImage, kIndex };

bool IsIndexType(const std::string& media_type) {
  return media_type == kOciIndexType || media_type == kDockerListType;
}

// The media type without parameters ("; charset=...").
std::string BareMediaType(const std::string& content_type) {
  return Trim(content_type.substr(0, content_type.find(';')));
}

// A descriptor's digest and size, checked.
struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  bool foreign = false;  // Has "urls" (a non-distributable layer may be absent).
};

Result<Descriptor> ParseDescriptor(const Json& json, const std::string& where) {
  if (!json.is_object() || !json.contains("digest") || !json["digest"].is_string() ||
      !json.contains("size") || !json["size"].is_number_unsigned()) {
    return Status::InvalidArgument(where + ": a descriptor without a digest or a size");
  }
  Descriptor descriptor;
  descriptor.digest = json["digest"].get<std::string>();
  Status valid = ValidateDigest(descriptor.digest);
  if (!valid.ok()) {
    return Status::InvalidArgument(where + ": " + valid.message());
  }
  descriptor.size = json["size"].get<uint64_t>();
  if (json.contains("mediaType") && json["mediaType"].is_string()) {
    descriptor.media_type = json["mediaType"].get<std::string>();
  }
  descriptor.foreign = json.contains("urls");
  return descriptor;
}

// A manifest's parsed content: its kind and what it names.
struct ManifestContent {
  ManifestKind kind = ManifestKind::kImage;
  std::string media_type;
  std::vector<Descriptor> children;  // kIndex: the manifests it names.
  std::vector<Descriptor> blobs;     // kImage: config, then layers.
};

// media_type: what the descriptor or the answer said (may be empty: then the manifest's own
// mediaType field, then its shape, decide).
Result<ManifestContent> ParseManifest(const std::string& bytes, const std::string& media_type,
                                      const std::string& where) {
  Json json = Json::parse(bytes, nullptr, false);
  if (!json.is_object()) {
    return Status::InvalidArgument(where + ": not a JSON object");
  }
  ManifestContent content;
  content.media_type = BareMediaType(media_type);
  if (content.media_type.empty() && json.contains("mediaType") && json["mediaType"].is_string()) {
    content.media_type = json["mediaType"].get<std::string>();
  }
  if (content.media_type.empty()) {
    content.media_type = json.contains("manifests") ? kOciIndexType : kOciManifestType;
  }
  content.kind = IsIndexType(content.media_type) ? ManifestKind::kIndex : ManifestKind::kImage;
  if (content.kind == ManifestKind::kIndex) {
    if (!json.contains("manifests") || !json["manifests"].is_array()) {
      return Status::InvalidArgument(where + ": an index without a \"manifests\" array");
    }
    for (const Json& child : json["manifests"]) {
      Result<Descriptor> descriptor = ParseDescriptor(child, where + " (manifests)");
      if (!descriptor.ok()) {
        return descriptor.status();
      }
      content.children.push_back(std::move(*descriptor));
    }
    return content;
  }
  if (json.contains("config")) {
    Result<Descriptor> config = ParseDescriptor(json["config"], where + " (config)");
    if (!config.ok()) {
      return config.status();
    }
    content.blobs.push_back(std::move(*config));
  }
  if (json.contains("layers")) {
    if (!json["layers"].is_array()) {
      return Status::InvalidArgument(where + ": \"layers\" is not an array");
    }
    for (const Json& layer : json["layers"]) {
      Result<Descriptor> descriptor = ParseDescriptor(layer, where + " (layers)");
      if (!descriptor.ok()) {
        return descriptor.status();
      }
      content.blobs.push_back(std::move(*descriptor));
    }
  }
  return content;
}

// What an image is made of, in push order: blobs, then manifests with children before the
// indexes that name them; the last manifest is the tagged one.
struct ManifestItem {
  std::string digest;
  std::string media_type;
  std::string bytes;
};
struct ImagePlan {
  std::vector<Descriptor> blobs;
  std::set<std::string> blob_digests;
  std::vector<ManifestItem> manifests;
  std::set<std::string> manifest_digests;
};

// Adds a manifest's blobs to plan, or (an index) checks that it has room for its children.
Status AddToPlan(const ManifestContent& content, ImagePlan* plan) {
  for (const Descriptor& blob : content.blobs) {
    if (plan->blob_digests.insert(blob.digest).second) {
      plan->blobs.push_back(blob);
    }
  }
  if (plan->blobs.size() > kImageBlobsMax) {
    return Status::InvalidArgument("the image names more than " +
                                   std::to_string(kImageBlobsMax) + " blobs");
  }
  if (plan->manifests.size() + content.children.size() > kImageManifestsMax) {
    return Status::InvalidArgument("the image names more than " +
                                   std::to_string(kImageManifestsMax) + " manifests");
  }
  return Status::Ok();
}

std::string BlobPath(const std::string& layout_dir, const std::string& digest) {
  return layout_dir + "/blobs/sha256/" + digest.substr(7);
}

}  // namespace

// ---- Validation ----

std::vector<std::string> DefaultManifestAccept() {
  return {kOciManifestType, kOciIndexType, kDockerManifestType, kDockerListType};
}

Status ValidateDigest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.substr(0, kPrefix.size()) != kPrefix) {
    return Status::InvalidArgument("digest \"" + std::string(digest.substr(0, 80)) +
                                   "\": not sha256:<64 lowercase hex digits>");
  }
  const std::string_view hex = digest.substr(kPrefix.size());
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), IsLowerHex)) {
    return Status::InvalidArgument("digest \"" + std::string(digest.substr(0, 80)) +
                                   "\": not sha256:<64 lowercase hex digits>");
  }
  return Status::Ok();
}

Status ValidateRepository(std::string_view repository) {
  const auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("repository \"" + std::string(repository.substr(0, 80)) +
                                   "\": " + why);
  };
  if (repository.empty()) {
    return bad("empty");
  }
  if (repository.size() > kRepositoryBytesMax) {
    return bad("longer than " + std::to_string(kRepositoryBytesMax) + " bytes");
  }
  // Each component: [a-z0-9]+ runs joined by one separator: '.', '_', "__" or '-'+.
  size_t start = 0;
  while (start <= repository.size()) {
    size_t end = repository.find('/', start);
    if (end == std::string_view::npos) {
      end = repository.size();
    }
    const std::string_view component = repository.substr(start, end - start);
    if (component.empty()) {
      return bad("an empty path component");
    }
    if (!IsLowerAlnum(component.front()) || !IsLowerAlnum(component.back())) {
      return bad("a path component must begin and end with [a-z0-9]");
    }
    size_t i = 0;
    while (i < component.size()) {
      if (IsLowerAlnum(component[i])) {
        i++;
        continue;
      }
      size_t run = i;
      while (run < component.size() && !IsLowerAlnum(component[run])) {
        run++;
      }
      const std::string_view separator = component.substr(i, run - i);
      const bool dashes = separator.find_first_not_of('-') == std::string_view::npos;
      if (separator != "." && separator != "_" && separator != "__" && !dashes) {
        return bad("only [a-z0-9] joined by '.', '_', '__' or dashes, and '/' between "
                   "components");
      }
      i = run;
    }
    start = end + 1;
  }
  return Status::Ok();
}

Status ValidateTag(std::string_view tag) {
  const auto tag_char = [](char c) {
    return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '-';
  };
  if (tag.empty() || tag.size() > 128 || !std::all_of(tag.begin(), tag.end(), tag_char) ||
      tag.front() == '.' || tag.front() == '-') {
    return Status::InvalidArgument("tag \"" + std::string(tag.substr(0, 80)) +
                                   "\": not [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}");
  }
  return Status::Ok();
}

Status ValidateReference(std::string_view reference) {
  if (reference.find(':') != std::string_view::npos) {
    return ValidateDigest(reference);
  }
  return ValidateTag(reference);
}

std::string Sha256Digest(std::string_view bytes) {
  Sha256 sha;
  sha.Update(bytes.data(), bytes.size());
  return sha.Digest();
}

// ---- Request and Reply ----

namespace internal {

struct RegistryReply {
  int http_status = 0;
  std::map<std::string, std::string> headers;  // Names lower-cased; the last value of each.
  std::string body;  // Up to Request::body_bytes_max; 2xx bodies with a sink are not kept.

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  bool success() const { return http_status >= 200 && http_status < 300; }
};

struct RegistryRequest {
  std::string method;
  std::string url;   // Absolute.
  std::string what;  // The operation, for messages ("upload blob sha256:... to ci/macos").
  std::vector<std::string> headers;
  // The body, when has_body: bytes (if not null), else body_length bytes of body_fd from
  // body_offset.
  bool has_body = false;
  const std::string* bytes = nullptr;
  int body_fd = -1;
  uint64_t body_offset = 0;
  uint64_t body_length = 0;
  Progress progress;         // As the body goes: (progress_base + sent, progress_total).
  uint64_t progress_base = 0;
  uint64_t progress_total = 0;
  // 2xx answer bodies go to sink (which returns false, with *sink_error set, to abort) when
  // set; every other body is kept in Reply::body up to body_bytes_max bytes, and a longer one
  // fails the request when body_limit_fails (a manifest) or is cut (an error's text).
  std::function<bool(const RegistryReply& reply, std::string_view data)> sink;
  Status sink_error;
  uint64_t body_bytes_max = kErrorBodyBytesMax;
  bool body_limit_fails = false;
  bool follow_redirects = false;
  bool streaming = false;  // A blob: bounded by stall_timeout_ms, not request_timeout_ms.

  // Runtime state of one attempt.
  uint64_t sent = 0;
  bool body_too_large = false;
  RegistryReply* reply = nullptr;
  CURL* curl = nullptr;
};

// A blob's bytes to send: in memory (bytes not null) or in the file open at fd.
struct BlobBody {
  const std::string* bytes = nullptr;
  int fd = -1;
  uint64_t size = 0;
};

}  // namespace internal

using Request = internal::RegistryRequest;
using Reply = internal::RegistryReply;
using internal::BlobBody;

namespace {

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* request = static_cast<Request*>(user);
  const std::string_view line(data, size * count);
  if (line.substr(0, 5) == "HTTP/") {
    // A 100 Continue or a redirect came before: its headers and body are not this answer's.
    request->reply->headers.clear();
    request->reply->body.clear();
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    request->reply->headers[ToLower(std::string(line.substr(0, colon)))] =
        Trim(line.substr(colon + 1));
  }
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* request = static_cast<Request*>(user);
  Reply* reply = request->reply;
  const size_t bytes = size * count;
  long status = 0;
  curl_easy_getinfo(request->curl, CURLINFO_RESPONSE_CODE, &status);
  reply->http_status = static_cast<int>(status);
  if (request->sink && reply->success()) {
    return request->sink(*reply, std::string_view(data, bytes)) ? bytes : 0;
  }
  const uint64_t room = request->body_bytes_max - std::min<uint64_t>(request->body_bytes_max,
                                                                     reply->body.size());
  if (bytes > room && request->body_limit_fails && reply->success()) {
    request->body_too_large = true;
    return 0;
  }
  reply->body.append(data, static_cast<size_t>(std::min<uint64_t>(bytes, room)));
  return bytes;
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* request = static_cast<Request*>(user);
  const size_t want = static_cast<size_t>(
      std::min<uint64_t>(size * count, request->body_length - request->sent));
  if (want == 0) {
    return 0;
  }
  size_t got = 0;
  if (request->bytes != nullptr) {
    std::memcpy(buffer, request->bytes->data() + request->body_offset + request->sent, want);
    got = want;
  } else {
    ssize_t n = -1;
    do {
      n = pread(request->body_fd, buffer, want,
                static_cast<off_t>(request->body_offset + request->sent));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      return CURL_READFUNC_ABORT;  // The file shrank or cannot be read.
    }
    got = static_cast<size_t>(n);
  }
  request->sent += got;
  if (request->progress) {
    request->progress(request->progress_base + request->sent, request->progress_total);
  }
  return got;
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* request = static_cast<Request*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > request->body_length) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  request->sent = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// The OCI error codes and messages of an answer's body ("DIGEST_INVALID: provided digest did
// not match uploaded content"), or the Anka envelope's message, or "".
std::string ErrorText(const std::string& body) {
  Json json = Json::parse(body, nullptr, false);
  if (!json.is_object()) {
    return "";
  }
  std::string text;
  if (json.contains("errors") && json["errors"].is_array()) {
    int shown = 0;
    for (const Json& error : json["errors"]) {
      if (!error.is_object() || shown == 3) {
        continue;
      }
      if (!text.empty()) {
        text += "; ";
      }
      text += error.value("code", std::string("?"));
      const std::string message = error.value("message", std::string());
      if (!message.empty()) {
        text += ": " + message.substr(0, 200);
      }
      shown++;
    }
  } else if (json.contains("message") && json["message"].is_string()) {
    text = json["message"].get<std::string>().substr(0, 200);
  }
  return text;
}

}  // namespace

namespace {

// The Status for an answer that was not the one expected.
Status ReplyError(const std::string& what, const std::string& method, const std::string& url,
                  int http_status, const std::string& body) {
  std::string message = what + " (" + method + " " + PathForMessage(url) + "): HTTP " +
                        std::to_string(http_status);
  const std::string detail = ErrorText(body);
  if (!detail.empty()) {
    message += " " + detail;
  } else if (http_status == 401) {
    message += " authentication required";
  } else if (http_status == 403) {
    message += " denied";
  }
  if (http_status == 404) {
    return Status::NotFound(message);
  }
  if (http_status == 405) {
    return Status::Unsupported(message);
  }
  if (http_status >= 400 && http_status < 500) {
    return Status::InvalidArgument(message);
  }
  return Status::IoError(message);
}

}  // namespace

// ---- RegistryClient ----

RegistryClient::RegistryClient(RegistryClientOptions options)
    : options_(std::move(options)), curl_(curl_easy_init()) {
  while (!options_.url.empty() && options_.url.back() == '/') {
    options_.url.pop_back();
  }
  origin_ = OriginOf(options_.url);
}

RegistryClient::~RegistryClient() {
  if (curl_ != nullptr) {
    curl_easy_cleanup(static_cast<CURL*>(curl_));
  }
}

std::string RegistryClient::Resolve(const std::string& path_or_location) const {
  const std::string origin = OriginOf(path_or_location);
  if (origin.empty()) {
    if (!path_or_location.empty() && path_or_location.front() == '/') {
      // Absolute path: on the client's origin (the URL's own path prefix does not apply:
      // registries answer with paths from their root).
      return origin_ + path_or_location;
    }
    return options_.url + "/" + path_or_location;  // Relative (rare).
  }
  if (origin == origin_) {
    return path_or_location;
  }
  // Another origin (a registry behind a proxy that names itself differently): its path and
  // query on ours, so that credentials stay with the host they were given for.
  const size_t scheme_end = path_or_location.find("://");
  const size_t slash = path_or_location.find('/', scheme_end + 3);
  return origin_ + (slash == std::string::npos ? "/" : path_or_location.substr(slash));
}

Result<Reply> RegistryClient::Perform(
    Request& request, const std::vector<std::string>& header_lines) {
  CURL* curl = static_cast<CURL*>(curl_);
  if (curl == nullptr) {
    return Status::IoError("libcurl could not start");
  }
  curl_easy_reset(curl);
  Reply reply;
  request.reply = &reply;
  request.curl = curl;
  request.sent = 0;
  request.body_too_large = false;
  request.sink_error = Status::Ok();
  curl_slist* headers = nullptr;
  for (const std::string& line : request.headers) {
    headers = curl_slist_append(headers, line.c_str());
  }
  for (const std::string& line : header_lines) {
    headers = curl_slist_append(headers, line.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
  if (request.streaming) {
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                     std::max(1L, (options_.stall_timeout_ms + 999) / 1000));
  } else {
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, options_.request_timeout_ms);
  }
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &request);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &request);
  if (request.method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method == "DELETE") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
  } else {
    // POST, PUT, PATCH: always with a Content-Length, 0 when there is no body.
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, &OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &request);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, &OnSeek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, &request);
    const uint64_t length = request.has_body ? request.body_length : 0;
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(length));
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 256L << 10);
    headers = curl_slist_append(
        headers, length >= kExpectContinueBytesMin ? "Expect: 100-continue" : "Expect:");
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (request.follow_redirects) {
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  }
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  if (options_.insecure) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!options_.cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.cert_file.c_str());
    if (!options_.key_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
      curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.key_file.c_str());
    }
  }
  const CURLcode rc = curl_easy_perform(curl);
  // The list holds the Authorization header: wipe it before it is freed.
  for (curl_slist* item = headers; item != nullptr; item = item->next) {
    OPENSSL_cleanse(item->data, std::strlen(item->data));
  }
  curl_slist_free_all(headers);
  request.reply = nullptr;
  long connects = 0;
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connects);
  connections_opened_ += static_cast<uint64_t>(std::max(0L, connects));
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  last_http_status_ = rc == CURLE_OK ? static_cast<int>(status) : 0;
  const std::string where = request.what + " (" + request.method + " " +
                            PathForMessage(request.url) + ")";
  if (!request.sink_error.ok()) {
    return request.sink_error;
  }
  if (request.body_too_large) {
    return Status::InvalidArgument(where + ": the answer is larger than " +
                                   std::to_string(request.body_bytes_max) + " bytes");
  }
  // An error answer whose body is shorter than its Content-Length (docker-registry 2.8's 416
  // says the blob's size and sends nothing) is still an answer: its body is only text.
  const bool answered = rc == CURLE_PARTIAL_FILE && status >= 300;
  if (rc != CURLE_OK && !answered) {
    return Status::IoError(where + ": " + curl_easy_strerror(rc) + " (" + origin_ + ")");
  }
  last_http_status_ = static_cast<int>(status);
  reply.http_status = static_cast<int>(status);
  return reply;
}

Result<Reply> RegistryClient::Send(Request& request) {
  const RawPost post = [this](const std::string& path, const std::string& json_body) {
    Request tap;
    tap.method = "POST";
    tap.url = Resolve(path);
    tap.what = "TAP";
    tap.headers = {"Content-Type: application/json"};
    tap.has_body = true;
    tap.bytes = &json_body;
    tap.body_length = json_body.size();
    tap.body_bytes_max = 1 << 20;
    Result<Reply> raw = Perform(tap, {});
    if (!raw.ok()) {
      return Result<RawReply>(raw.status());
    }
    return Result<RawReply>(RawReply{raw->http_status, std::move(raw->body)});
  };
  Result<Reply> reply = Status::IoError("not sent");
  // Twice at most: once more after a 401 that made auth drop its TAP session.
  for (int attempt = 0; attempt < 2; attempt++) {
    Result<std::vector<std::string>> headers = std::vector<std::string>{};
    if (options_.auth != nullptr) {
      headers = options_.auth->Headers(post);
      if (!headers.ok()) {
        return Status(headers.status());
      }
    }
    reply = Perform(request, *headers);
    if (!reply.ok()) {
      return reply;
    }
    if (reply->http_status != 401 || options_.auth == nullptr || attempt > 0 ||
        !options_.auth->Invalidate(*headers)) {
      break;
    }
  }
  return reply;
}

// ---- Ping, blobs ----

Status RegistryClient::Ping() {
  Request request;
  request.method = "GET";
  request.url = Resolve("/v2/");
  request.what = "ping " + origin_;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status == 200) {
    return Status::Ok();
  }
  if (reply->http_status == 401 || reply->http_status == 403) {
    return ReplyError(request.what, "GET", request.url, reply->http_status, reply->body);
  }
  return Status::Unsupported(request.what + " (GET /v2/): HTTP " +
                             std::to_string(reply->http_status) +
                             ": not an OCI Distribution registry");
}

Result<std::optional<uint64_t>> RegistryClient::BlobExists(const std::string& repository,
                                                           const std::string& digest) {
  for (const Status& valid : {ValidateRepository(repository), ValidateDigest(digest)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  Request request;
  request.method = "HEAD";
  request.url = Resolve("/v2/" + repository + "/blobs/" + digest);
  request.what = "check blob " + digest + " in " + repository;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status == 404) {
    return std::optional<uint64_t>();
  }
  if (reply->http_status != 200) {
    return ReplyError(request.what, "HEAD", request.url, reply->http_status, reply->body);
  }
  const std::string length = reply->Header("content-length");
  char* end = nullptr;
  const unsigned long long size = std::strtoull(length.c_str(), &end, 10);
  if (length.empty() || *end != '\0') {
    return Status::IoError(request.what + ": the registry's 200 has no Content-Length");
  }
  return std::optional<uint64_t>(size);
}

Result<std::string> RegistryClient::StartUpload(const std::string& repository,
                                                const std::string& what) {
  Request request;
  request.method = "POST";
  request.url = Resolve("/v2/" + repository + "/blobs/uploads/");
  request.what = what;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status != 202) {
    return ReplyError(what, "POST", request.url, reply->http_status, reply->body);
  }
  const std::string location = reply->Header("location");
  if (location.empty()) {
    return Status::IoError(what + ": the registry's 202 to POST " +
                           PathForMessage(request.url) + " has no Location");
  }
  return Resolve(location);
}

void RegistryClient::CancelUpload(const std::string& location) {
  Request request;
  request.method = "DELETE";
  request.url = location;
  request.what = "cancel upload";
  (void)Send(request);  // Best effort: the registry expires abandoned uploads anyway.
}

namespace {

// Checks a 201 that completed an upload: the digest the registry names must be ours.
Status CheckCreated(const std::string& what, const std::string& header,
                    const std::string& digest) {
  if (!header.empty() && header != digest) {
    return Status::Corruption(what + ": the registry stored it as " + header.substr(0, 80));
  }
  return Status::Ok();
}

}  // namespace

Status RegistryClient::PutUpload(const std::string& location, const BlobBody& body,
                                 uint64_t offset, uint64_t length, const std::string& digest,
                                 const std::string& what, const Progress& progress) {
  Request request;
  request.method = "PUT";
  request.url = AppendQuery(location, "digest=" + UrlEncode(digest));
  request.what = what;
  request.headers = {"Content-Type: application/octet-stream"};
  request.has_body = true;
  request.bytes = body.bytes;
  request.body_fd = body.fd;
  request.body_offset = offset;
  request.body_length = length;
  request.progress = progress;
  request.progress_base = offset;
  request.progress_total = body.size;
  request.streaming = true;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status != 201) {
    return ReplyError(what, "PUT", request.url, reply->http_status, reply->body);
  }
  return CheckCreated(what, reply->Header("docker-content-digest"), digest);
}

Status RegistryClient::UploadChunks(const std::string& repository, const BlobBody& body,
                                    const std::string& digest, const UploadOptions& options,
                                    const std::string& what) {
  Result<std::string> location = StartUpload(repository, what);
  if (!location.ok()) {
    return location.status();
  }
  Status status;
  uint64_t offset = 0;
  while (status.ok() && offset < body.size) {
    const uint64_t length = std::min(options.chunk_bytes, body.size - offset);
    const std::string range = std::to_string(offset) + "-" + std::to_string(offset + length - 1);
    Request request;
    request.method = "PATCH";
    request.url = *location;
    request.what = what + " (bytes " + range + ")";
    request.headers = {"Content-Type: application/octet-stream", "Content-Range: " + range};
    request.has_body = true;
    request.bytes = body.bytes;
    request.body_fd = body.fd;
    request.body_offset = offset;
    request.body_length = length;
    request.progress = options.progress;
    request.progress_base = offset;
    request.progress_total = body.size;
    request.streaming = true;
    Result<Reply> reply = Send(request);
    if (!reply.ok()) {
      status = reply.status();
      break;
    }
    if (reply->http_status != 202) {
      status = ReplyError(request.what, "PATCH", request.url, reply->http_status, reply->body);
      break;
    }
    // The registry says what it holds: it must be everything sent so far.
    const std::string held = reply->Header("range");
    const std::string expected = "0-" + std::to_string(offset + length - 1);
    if (!held.empty() && held != expected && held != "bytes=" + expected) {
      status = Status::IoError(request.what + ": the registry holds bytes " + held.substr(0, 40) +
                               ", not " + expected);
      break;
    }
    if (!reply->Header("location").empty()) {
      *location = Resolve(reply->Header("location"));
    }
    offset += length;
  }
  if (status.ok()) {
    status = PutUpload(*location, body, body.size, 0, digest, what, options.progress);
  }
  if (!status.ok()) {
    CancelUpload(*location);
  }
  return status;
}

Status RegistryClient::UploadSingleRequest(const std::string& repository, const BlobBody& body,
                                           const std::string& digest,
                                           const UploadOptions& options,
                                           const std::string& what) {
  Request request;
  request.method = "POST";
  request.url =
      Resolve("/v2/" + repository + "/blobs/uploads/?digest=" + UrlEncode(digest));
  request.what = what;
  request.headers = {"Content-Type: application/octet-stream"};
  request.has_body = true;
  request.bytes = body.bytes;
  request.body_fd = body.fd;
  request.body_length = body.size;
  request.progress = options.progress;
  request.progress_total = body.size;
  request.streaming = true;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status == 201) {
    return CheckCreated(what, reply->Header("docker-content-digest"), digest);
  }
  if (reply->http_status != 202 || reply->Header("location").empty()) {
    return ReplyError(what, "POST", request.url, reply->http_status, reply->body);
  }
  // The registry opened an upload session instead (OCI allows it): send the body there.
  const std::string location = Resolve(reply->Header("location"));
  Status status = PutUpload(location, body, 0, body.size, digest, what, options.progress);
  if (!status.ok()) {
    CancelUpload(location);
  }
  return status;
}

Status RegistryClient::UploadBody(const std::string& repository, const BlobBody& body,
                                  const std::string& digest, const UploadOptions& options) {
  const std::string what = "upload blob " + digest + " to " + repository;
  switch (options.mode) {
    case UploadMode::kMonolithic: {
      Result<std::string> location = StartUpload(repository, what);
      if (!location.ok()) {
        return location.status();
      }
      Status status = PutUpload(*location, body, 0, body.size, digest, what, options.progress);
      if (!status.ok()) {
        CancelUpload(*location);
      }
      return status;
    }
    case UploadMode::kChunked:
      if (options.chunk_bytes == 0) {
        return Status::InvalidArgument(what + ": chunk_bytes must be at least 1");
      }
      return UploadChunks(repository, body, digest, options, what);
    case UploadMode::kSingleRequest:
      return UploadSingleRequest(repository, body, digest, options, what);
  }
  CL_ASSERT(false);  // Every mode is handled above.
  return Status::Ok();
}

Status RegistryClient::UploadBlob(const std::string& repository, const std::string& path,
                                  const std::string& digest, uint64_t size,
                                  const UploadOptions& options) {
  for (const Status& valid : {ValidateRepository(repository), ValidateDigest(digest)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound(path + ": no such file")
                           : Status::IoError("open " + path + ": " + ErrnoText(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    return Status::IoError("stat " + path + ": " + ErrnoText(error));
  }
  if (static_cast<uint64_t>(st.st_size) != size) {
    close(fd);
    return Status::InvalidArgument(path + " holds " + std::to_string(st.st_size) +
                                   " bytes, not the " + std::to_string(size) + " claimed");
  }
  BlobBody body;
  body.fd = fd;
  body.size = size;
  Status status = UploadBody(repository, body, digest, options);
  close(fd);
  if (status.code() == StatusCode::kInvalidArgument &&
      status.message().find("DIGEST_INVALID") != std::string::npos) {
    // Say whose fault it is: the file's bytes, or what reached the registry.
    Result<std::string> actual = DigestOfFile(path);
    if (actual.ok() && *actual != digest) {
      return Status::InvalidArgument(status.message() + " (the file's bytes hash to " + *actual +
                                     ")");
    }
    if (actual.ok()) {
      return Status::InvalidArgument(status.message() +
                                     " (the file's bytes do hash to it: the registry received "
                                     "other bytes)");
    }
  }
  return status;
}

Result<std::string> RegistryClient::UploadBlobBytes(const std::string& repository,
                                                    const std::string& bytes,
                                                    const UploadOptions& options) {
  Status valid = ValidateRepository(repository);
  if (!valid.ok()) {
    return valid;
  }
  BlobBody body;
  body.bytes = &bytes;
  body.size = bytes.size();
  const std::string digest = Sha256Digest(bytes);
  Status status = UploadBody(repository, body, digest, options);
  if (!status.ok()) {
    return status;
  }
  return digest;
}

Result<bool> RegistryClient::MountBlob(const std::string& repository, const std::string& digest,
                                       const std::string& from_repository) {
  for (const Status& valid : {ValidateRepository(repository), ValidateDigest(digest),
                              ValidateRepository(from_repository)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  Request request;
  request.method = "POST";
  request.url = Resolve("/v2/" + repository + "/blobs/uploads/?mount=" + UrlEncode(digest) +
                        "&from=" + UrlEncode(from_repository));
  request.what = "mount blob " + digest + " from " + from_repository + " in " + repository;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status == 201) {
    Status created = CheckCreated(request.what, reply->Header("docker-content-digest"), digest);
    if (!created.ok()) {
      return created;
    }
    return true;
  }
  if (reply->http_status == 202) {
    if (!reply->Header("location").empty()) {
      CancelUpload(Resolve(reply->Header("location")));
    }
    return false;
  }
  return ReplyError(request.what, "POST", request.url, reply->http_status, reply->body);
}

// ---- Downloads ----

namespace {

// "bytes <first>-<last>/<total>": first and total (total 0 when "*").
bool ParseContentRange(const std::string& header, uint64_t* first, uint64_t* total) {
  unsigned long long a = 0;
  unsigned long long b = 0;
  char slash_total[32] = {0};
  if (std::sscanf(header.c_str(), "bytes %llu-%llu/%31s", &a, &b, slash_total) != 3) {
    return false;
  }
  *first = a;
  *total = std::strtoull(slash_total, nullptr, 10);
  return true;
}

// Where a download's bytes go: a file, hashed as it grows. Owns the file descriptor.
class DownloadTarget {
 public:
  DownloadTarget(std::string path, std::string what, Progress progress)
      : path_(std::move(path)), what_(std::move(what)), progress_(std::move(progress)) {}
  ~DownloadTarget() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  DownloadTarget(const DownloadTarget&) = delete;
  DownloadTarget& operator=(const DownloadTarget&) = delete;

  // Opens the file; with resume, what it holds is hashed and kept as the blob's first bytes.
  Status Open(bool resume) {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0644);
    if (fd_ < 0) {
      return Status::IoError("open " + path_ + ": " + ErrnoText(errno));
    }
    struct stat st {};
    if (fstat(fd_, &st) != 0) {
      return Status::IoError("stat " + path_ + ": " + ErrnoText(errno));
    }
    held_ = resumed_ = static_cast<uint64_t>(st.st_size);
    Status hashed = HashFilePrefix(fd_, held_, &sha_, path_);
    if (hashed.ok() && lseek(fd_, static_cast<off_t>(held_), SEEK_SET) < 0) {
      return Status::IoError("seek " + path_ + ": " + ErrnoText(errno));
    }
    return hashed;
  }

  uint64_t resumed() const { return resumed_; }
  uint64_t held() const { return held_; }
  // Whether the bytes held so far are the blob's.
  bool Whole(const std::string& digest) const { return sha_.Peek() == digest; }
  // The digest of the bytes held, after which nothing more may be added.
  std::string Finish() { return sha_.Digest(); }
  // Empties the file, to fetch the blob from its first byte.
  Status Restart() {
    if (ftruncate(fd_, 0) != 0 || lseek(fd_, 0, SEEK_SET) < 0) {
      return Status::IoError("truncate " + path_ + ": " + ErrnoText(errno));
    }
    held_ = resumed_ = 0;
    sha_.Reset();
    return Status::Ok();
  }
  // Closes the file and removes it.
  void Remove() {
    close(fd_);
    fd_ = -1;
    unlink(path_.c_str());
  }
  // The answer's next body bytes (only 2xx bodies come here).
  Status Accept(const Reply& reply, std::string_view data) {
    if (!started_) {
      started_ = true;
      Status begun = Begin(reply);
      if (!begun.ok()) {
        return begun;
      }
    }
    Status wrote = WriteAll(fd_, data.data(), data.size(), path_);
    if (!wrote.ok()) {
      return wrote;
    }
    sha_.Update(data.data(), data.size());
    held_ += data.size();
    if (progress_) {
      progress_(held_, total_);
    }
    return Status::Ok();
  }

 private:
  // A 206 must start where the file ends; a 200 (Range ignored) starts the file again.
  Status Begin(const Reply& reply) {
    const std::string length = reply.Header("content-length");
    total_ = length.empty() ? 0 : std::strtoull(length.c_str(), nullptr, 10);
    if (reply.http_status != 206) {
      return held_ > 0 ? Restart() : Status::Ok();
    }
    uint64_t first = 0;
    uint64_t total = 0;
    if (!ParseContentRange(reply.Header("content-range"), &first, &total) || first != held_) {
      return Status::IoError(what_ + ": the registry's 206 does not start at byte " +
                             std::to_string(held_));
    }
    total_ = total != 0 ? total : total_ + held_;
    return Status::Ok();
  }

  const std::string path_;
  const std::string what_;
  const Progress progress_;
  int fd_ = -1;
  uint64_t held_ = 0;     // Bytes in the file (resumed ones included).
  uint64_t resumed_ = 0;  // Bytes that were there before the request.
  uint64_t total_ = 0;    // The blob's size as the answer gives it (0: unknown).
  bool started_ = false;  // The answer's first body bytes were seen.
  Sha256 sha_;
};

}  // namespace

Status RegistryClient::DownloadBlob(const std::string& repository, const std::string& digest,
                                    const std::string& dest_path,
                                    const DownloadOptions& options) {
  for (const Status& valid : {ValidateRepository(repository), ValidateDigest(digest)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  const std::string what = "download blob " + digest + " from " + repository;
  DownloadTarget target(dest_path, what, options.progress);
  Status opened = target.Open(options.resume);
  if (!opened.ok() || (target.held() > 0 && target.Whole(digest))) {
    return opened;  // An error, or already whole: nothing to ask for.
  }
  Request request;
  request.method = "GET";
  request.url = Resolve("/v2/" + repository + "/blobs/" + digest);
  request.what = what;
  request.follow_redirects = true;
  request.streaming = true;
  request.sink = [&target, &request](const Reply& reply, std::string_view data) {
    Status accepted = target.Accept(reply, data);
    if (!accepted.ok()) {
      request.sink_error = accepted;
    }
    return accepted.ok();
  };
  if (target.resumed() > 0) {
    request.headers = {"Range: bytes=" + std::to_string(target.resumed()) + "-"};
  }
  Result<Reply> reply = Send(request);
  if (reply.ok() && reply->http_status == 416 && target.resumed() > 0) {
    // The file is longer than the blob (it is not whole: that was checked): start again.
    Status restarted = target.Restart();
    if (!restarted.ok()) {
      return restarted;
    }
    request.headers.clear();
    reply = Send(request);
  }
  if (!reply.ok()) {
    return reply.status();  // The file keeps what arrived, for a resume.
  }
  if (reply->http_status != 200 && reply->http_status != 206) {
    if (target.held() == 0) {
      target.Remove();
    }
    return ReplyError(what, "GET", request.url, reply->http_status, reply->body);
  }
  const std::string actual = target.Finish();
  if (actual != digest) {
    target.Remove();
    return Status::Corruption(what + ": the " + std::to_string(target.held()) +
                              " bytes received hash to " + actual + "; " + dest_path +
                              " removed");
  }
  return Status::Ok();
}

Result<std::string> RegistryClient::FetchBlob(const std::string& repository,
                                              const std::string& digest, uint64_t bytes_max) {
  for (const Status& valid : {ValidateRepository(repository), ValidateDigest(digest)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  Request request;
  request.method = "GET";
  request.url = Resolve("/v2/" + repository + "/blobs/" + digest);
  request.what = "fetch blob " + digest + " from " + repository;
  request.follow_redirects = true;
  request.streaming = true;
  request.body_bytes_max = bytes_max;
  request.body_limit_fails = true;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status != 200) {
    return ReplyError(request.what, "GET", request.url, reply->http_status, reply->body);
  }
  const std::string actual = Sha256Digest(reply->body);
  if (actual != digest) {
    return Status::Corruption(request.what + ": the " + std::to_string(reply->body.size()) +
                              " bytes received hash to " + actual);
  }
  return std::move(reply->body);
}

// ---- Manifests and tags ----

Result<std::string> RegistryClient::PutManifest(const std::string& repository,
                                                const std::string& reference,
                                                const std::string& media_type,
                                                const std::string& bytes) {
  for (const Status& valid : {ValidateRepository(repository), ValidateReference(reference)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  const std::string what = "put manifest " + repository + ":" + reference;
  if (bytes.size() > kManifestBytesMax) {
    return Status::InvalidArgument(what + ": " + std::to_string(bytes.size()) +
                                   " bytes, more than " + std::to_string(kManifestBytesMax));
  }
  if (media_type.empty() || media_type.find_first_of("\r\n") != std::string::npos) {
    return Status::InvalidArgument(what + ": no media type");
  }
  const std::string digest = Sha256Digest(bytes);
  if (reference.find(':') != std::string::npos && reference != digest) {
    return Status::InvalidArgument(what + ": the bytes hash to " + digest);
  }
  Request request;
  request.method = "PUT";
  request.url = Resolve("/v2/" + repository + "/manifests/" + reference);
  request.what = what;
  request.headers = {"Content-Type: " + media_type};
  request.has_body = true;
  request.bytes = &bytes;
  request.body_length = bytes.size();
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status != 201) {
    return ReplyError(what, "PUT", request.url, reply->http_status, reply->body);
  }
  Status created = CheckCreated(what, reply->Header("docker-content-digest"), digest);
  if (!created.ok()) {
    return created;
  }
  return digest;
}

Result<Manifest> RegistryClient::GetManifest(const std::string& repository,
                                             const std::string& reference,
                                             const std::vector<std::string>& accept) {
  for (const Status& valid : {ValidateRepository(repository), ValidateReference(reference)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  std::string accept_line = "Accept: ";
  for (const std::string& type : accept.empty() ? DefaultManifestAccept() : accept) {
    accept_line += (accept_line.size() > 8 ? ", " : "") + type;
  }
  Request request;
  request.method = "GET";
  request.url = Resolve("/v2/" + repository + "/manifests/" + reference);
  request.what = "get manifest " + repository + ":" + reference;
  request.headers = {accept_line};
  request.body_bytes_max = kManifestBytesMax;
  request.body_limit_fails = true;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (reply->http_status != 200) {
    return ReplyError(request.what, "GET", request.url, reply->http_status, reply->body);
  }
  Manifest manifest;
  manifest.bytes = std::move(reply->body);
  manifest.digest = Sha256Digest(manifest.bytes);
  manifest.media_type = BareMediaType(reply->Header("content-type"));
  const std::string claimed = reply->Header("docker-content-digest");
  if (reference.find(':') != std::string::npos && reference != manifest.digest) {
    return Status::Corruption(request.what + ": the bytes received hash to " + manifest.digest);
  }
  if (!claimed.empty() && claimed != manifest.digest) {
    return Status::Corruption(request.what + ": the bytes received hash to " + manifest.digest +
                              ", the registry says " + claimed.substr(0, 80));
  }
  if (manifest.media_type.empty() || manifest.media_type == "application/json") {
    Json json = Json::parse(manifest.bytes, nullptr, false);
    if (json.is_object() && json.contains("mediaType") && json["mediaType"].is_string()) {
      manifest.media_type = json["mediaType"].get<std::string>();
    }
  }
  return manifest;
}

Status RegistryClient::DeleteManifest(const std::string& repository,
                                      const std::string& reference) {
  for (const Status& valid : {ValidateRepository(repository), ValidateReference(reference)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  Request request;
  request.method = "DELETE";
  request.url = Resolve("/v2/" + repository + "/manifests/" + reference);
  request.what = "delete manifest " + repository + ":" + reference;
  Result<Reply> reply = Send(request);
  if (!reply.ok()) {
    return reply.status();
  }
  if (!reply->success()) {
    return ReplyError(request.what, "DELETE", request.url, reply->http_status, reply->body);
  }
  return Status::Ok();
}

namespace {

// The target of a Link header's rel="next" entry, or "".
std::string NextLink(const std::string& link) {
  size_t start = 0;
  while (start < link.size()) {
    const size_t open = link.find('<', start);
    const size_t close = open == std::string::npos ? open : link.find('>', open);
    if (close == std::string::npos) {
      return "";
    }
    size_t end = link.find(',', close);
    if (end == std::string::npos) {
      end = link.size();
    }
    const std::string params = link.substr(close + 1, end - close - 1);
    if (params.find("rel=\"next\"") != std::string::npos ||
        params.find("rel=next") != std::string::npos) {
      return link.substr(open + 1, close - open - 1);
    }
    start = end + 1;
  }
  return "";
}

}  // namespace

Result<std::vector<std::string>> RegistryClient::ListTags(const std::string& repository, int n,
                                                          const std::string& last) {
  Status valid = ValidateRepository(repository);
  if (!valid.ok()) {
    return valid;
  }
  if (n < 0) {
    return Status::InvalidArgument("list tags of " + repository + ": n must not be negative");
  }
  std::string url = "/v2/" + repository + "/tags/list";
  if (n > 0) {
    url = AppendQuery(url, "n=" + std::to_string(n));
  }
  if (!last.empty()) {
    url = AppendQuery(url, "last=" + UrlEncode(last));
  }
  url = Resolve(url);
  std::vector<std::string> tags;
  std::set<std::string> seen_urls;
  for (int page = 0; page < kTagPagesMax; page++) {
    if (!seen_urls.insert(url).second) {
      return Status::IoError("list tags of " + repository + ": the registry's Link leads back to "
                             "a page already read");
    }
    Request request;
    request.method = "GET";
    request.url = url;
    request.what = "list tags of " + repository;
    request.body_bytes_max = kManifestBytesMax;
    request.body_limit_fails = true;
    Result<Reply> reply = Send(request);
    if (!reply.ok()) {
      return reply.status();
    }
    if (reply->http_status != 200) {
      return ReplyError(request.what, "GET", request.url, reply->http_status, reply->body);
    }
    Json json = Json::parse(reply->body, nullptr, false);
    if (!json.is_object() || (json.contains("tags") && !json["tags"].is_null() &&
                              !json["tags"].is_array())) {
      return Status::IoError(request.what + ": the answer is not {\"name\", \"tags\": [...]}");
    }
    if (json.contains("tags") && json["tags"].is_array()) {
      for (const Json& tag : json["tags"]) {
        if (tag.is_string()) {
          tags.push_back(tag.get<std::string>());
        }
      }
    }
    const std::string next = NextLink(reply->Header("link"));
    if (next.empty()) {
      return tags;
    }
    url = Resolve(next);
  }
  return Status::IoError("list tags of " + repository + ": more than " +
                         std::to_string(kTagPagesMax) + " pages");
}

// ---- Whole images ----

namespace {

// The descriptor of tag in a layout's index.json.
Result<Descriptor> FindInLayout(const std::string& layout_dir, const std::string& tag) {
  const std::string path = layout_dir + "/index.json";
  Result<std::string> text = ReadSmallFile(path, kLayoutIndexBytesMax);
  if (!text.ok()) {
    return text.status();
  }
  Json index = Json::parse(*text, nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return Status::InvalidArgument(path + ": not an OCI index (no \"manifests\" array)");
  }
  const Json& entries = index["manifests"];
  std::string names;
  const Json* unnamed = nullptr;
  for (const Json& entry : entries) {
    std::string name;
    if (entry.is_object() && entry.contains("annotations") && entry["annotations"].is_object()) {
      name = entry["annotations"].value(kRefNameAnnotation, std::string());
    }
    if (name == tag) {
      return ParseDescriptor(entry, path);
    }
    if (name.empty()) {
      unnamed = &entry;
    } else if (names.size() < 200) {
      names += (names.empty() ? "" : ", ") + name;
    }
  }
  if (entries.size() == 1 && unnamed != nullptr) {
    return ParseDescriptor(*unnamed, path);
  }
  return Status::NotFound(path + ": no image named " + tag +
                          (names.empty() ? std::string() : " (it has: " + names + ")"));
}

// Reads the manifest a layout descriptor names, checked against its digest and size, and
// plans it (children first) into plan.
Status PlanFromLayout(const std::string& layout_dir, const Descriptor& descriptor, int depth,
                      ImagePlan* plan) {
  if (depth > kImageDepthMax) {
    return Status::InvalidArgument("indexes nest deeper than " + std::to_string(kImageDepthMax));
  }
  if (plan->manifest_digests.count(descriptor.digest) != 0) {
    return Status::Ok();
  }
  const std::string path = BlobPath(layout_dir, descriptor.digest);
  Result<std::string> bytes = ReadSmallFile(path, kManifestBytesMax);
  if (!bytes.ok()) {
    return bytes.status();
  }
  if (Sha256Digest(*bytes) != descriptor.digest || bytes->size() != descriptor.size) {
    return Status::Corruption(path + ": its bytes are not those of " + descriptor.digest +
                              " (" + std::to_string(descriptor.size) + " bytes)");
  }
  Result<ManifestContent> content = ParseManifest(*bytes, descriptor.media_type, path);
  if (!content.ok()) {
    return content.status();
  }
  Status planned = AddToPlan(*content, plan);
  for (const Descriptor& child : content->children) {
    if (!planned.ok()) {
      break;
    }
    planned = PlanFromLayout(layout_dir, child, depth + 1, plan);
  }
  if (!planned.ok()) {
    return planned;
  }
  plan->manifest_digests.insert(descriptor.digest);
  plan->manifests.push_back({descriptor.digest, content->media_type, std::move(*bytes)});
  return Status::Ok();
}

}  // namespace

Result<ImageTransfer> RegistryClient::PushImage(const std::string& repository,
                                                const std::string& tag,
                                                const std::string& layout_dir,
                                                const ImageOptions& options) {
  for (const Status& valid : {ValidateRepository(repository), ValidateTag(tag)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  Result<Descriptor> top = FindInLayout(layout_dir, tag);
  if (!top.ok()) {
    return top.status();
  }
  ImagePlan plan;
  Status planned = PlanFromLayout(layout_dir, *top, 0, &plan);
  if (!planned.ok()) {
    return planned;
  }
  ImageTransfer transfer;
  transfer.blobs = plan.blobs.size();
  for (const Descriptor& blob : plan.blobs) {
    const std::string path = BlobPath(layout_dir, blob.digest);
    if (blob.foreign && access(path.c_str(), F_OK) != 0) {
      continue;  // A non-distributable layer, fetched from its URLs by whoever pulls.
    }
    Result<std::optional<uint64_t>> present = BlobExists(repository, blob.digest);
    if (!present.ok()) {
      return present.status();
    }
    if (present->has_value() && **present == blob.size) {
      continue;
    }
    UploadOptions upload = options.upload;
    if (options.progress) {
      upload.progress = [&options, &blob](uint64_t done, uint64_t total) {
        options.progress(blob.digest, done, total);
      };
    }
    Status sent = UploadBlob(repository, path, blob.digest, blob.size, upload);
    if (!sent.ok()) {
      return sent;
    }
    transfer.blobs_transferred++;
    transfer.bytes_transferred += blob.size;
  }
  for (size_t i = 0; i < plan.manifests.size(); i++) {
    const ManifestItem& item = plan.manifests[i];
    const bool tagged = i + 1 == plan.manifests.size();
    Result<std::string> digest =
        PutManifest(repository, tagged ? tag : item.digest, item.media_type, item.bytes);
    if (!digest.ok()) {
      return digest.status();
    }
    transfer.manifests++;
  }
  CL_ASSERT(!plan.manifests.empty());  // PlanFromLayout adds the tagged one last.
  transfer.digest = plan.manifests.back().digest;
  transfer.media_type = plan.manifests.back().media_type;
  return transfer;
}

namespace {

// Adds (or replaces) the entry named tag in the layout's index.json, and writes oci-layout if
// it is missing. A digest for tag adds an unnamed entry (unless one for it is there).
Status TagInLayout(const std::string& layout_dir, const std::string& tag,
                   const ManifestItem& top) {
  const std::string layout_file = layout_dir + "/oci-layout";
  if (access(layout_file.c_str(), F_OK) != 0) {
    Status wrote = WriteFileAtomically(layout_file, "{\"imageLayoutVersion\":\"1.0.0\"}");
    if (!wrote.ok()) {
      return wrote;
    }
  }
  const std::string path = layout_dir + "/index.json";
  Json index = {{"schemaVersion", 2}, {"mediaType", kOciIndexType}, {"manifests", Json::array()}};
  Result<std::string> text = ReadSmallFile(path, kLayoutIndexBytesMax);
  if (text.ok()) {
    index = Json::parse(*text, nullptr, false);
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
      return Status::InvalidArgument(path + ": not an OCI index (no \"manifests\" array)");
    }
  } else if (text.status().code() != StatusCode::kNotFound) {
    return text.status();
  }
  // A digest (pulled by digest) names no entry: it is added without a name, once.
  const bool by_digest = tag.find(':') != std::string::npos;
  Json kept = Json::array();
  for (const Json& entry : index["manifests"]) {
    const bool has_name = entry.is_object() && entry.contains("annotations") &&
                          entry["annotations"].is_object() &&
                          entry["annotations"].contains(kRefNameAnnotation);
    const bool named = has_name &&
                       entry["annotations"].value(kRefNameAnnotation, std::string()) == tag;
    const bool same_unnamed = by_digest && !has_name && entry.is_object() &&
                              entry.value("digest", std::string()) == top.digest;
    if (!named && !same_unnamed) {
      kept.push_back(entry);
    }
  }
  Json added = {{"mediaType", top.media_type}, {"digest", top.digest}, {"size", top.bytes.size()}};
  if (!by_digest) {
    added["annotations"] = {{kRefNameAnnotation, tag}};
  }
  kept.push_back(std::move(added));
  index["manifests"] = std::move(kept);
  Status wrote = WriteFileAtomically(path, index.dump());
  if (!wrote.ok()) {
    return wrote;
  }
  return SyncDirectory(layout_dir);
}

}  // namespace

namespace {

using GetManifestFn = std::function<Result<Manifest>(const std::string& reference)>;

// Fetches the manifest reference names (checked against parent, the descriptor that named it,
// if any) and plans it (children first) into plan.
Status PlanFromRegistry(const GetManifestFn& get, const std::string& repository,
                        const std::string& reference, const Descriptor* parent, int depth,
                        ImagePlan* plan) {
  if (depth > kImageDepthMax) {
    return Status::InvalidArgument("indexes nest deeper than " + std::to_string(kImageDepthMax));
  }
  if (parent != nullptr && plan->manifest_digests.count(parent->digest) != 0) {
    return Status::Ok();
  }
  Result<Manifest> manifest = get(reference);
  if (!manifest.ok()) {
    return manifest.status();
  }
  const std::string where = repository + ":" + reference;
  if (parent != nullptr && manifest->bytes.size() != parent->size) {
    return Status::Corruption(where + ": " + std::to_string(manifest->bytes.size()) +
                              " bytes, the index says " + std::to_string(parent->size));
  }
  std::string media_type = manifest->media_type;
  if (parent != nullptr && !parent->media_type.empty()) {
    media_type = parent->media_type;
  }
  Result<ManifestContent> content = ParseManifest(manifest->bytes, media_type, where);
  if (!content.ok()) {
    return content.status();
  }
  Status planned = AddToPlan(*content, plan);
  for (const Descriptor& child : content->children) {
    if (!planned.ok()) {
      break;
    }
    planned = PlanFromRegistry(get, repository, child.digest, &child, depth + 1, plan);
  }
  if (!planned.ok()) {
    return planned;
  }
  plan->manifest_digests.insert(manifest->digest);
  plan->manifests.push_back(
      {manifest->digest, content->media_type, std::move(manifest->bytes)});
  return Status::Ok();
}

}  // namespace

Result<ImageTransfer> RegistryClient::PullImage(const std::string& repository,
                                                const std::string& reference,
                                                const std::string& layout_dir,
                                                const ImageOptions& options) {
  const std::string& tag = reference;  // Or a digest: TagInLayout tells them apart.
  for (const Status& valid : {ValidateRepository(repository), ValidateReference(reference)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  const std::string blob_dir = layout_dir + "/blobs/sha256";
  Status made = MakeDirectories(blob_dir);
  if (!made.ok()) {
    return made;
  }
  ImagePlan plan;
  const GetManifestFn get = [this, &repository](const std::string& reference) {
    return GetManifest(repository, reference);
  };
  Status planned = PlanFromRegistry(get, repository, tag, nullptr, 0, &plan);
  if (!planned.ok()) {
    return planned;
  }
  ImageTransfer transfer;
  transfer.blobs = plan.blobs.size();
  for (const Descriptor& blob : plan.blobs) {
    const std::string path = BlobPath(layout_dir, blob.digest);
    Result<std::string> present = DigestOfFile(path);
    if (present.ok() && *present == blob.digest) {
      continue;
    }
    const std::string partial = path + ".partial";
    DownloadOptions download;
    download.resume = true;
    if (options.progress) {
      download.progress = [&options, &blob](uint64_t done, uint64_t total) {
        options.progress(blob.digest, done, total);
      };
    }
    Status fetched = DownloadBlob(repository, blob.digest, partial, download);
    if (!fetched.ok()) {
      return fetched;
    }
    fetched = SyncFile(partial);
    if (fetched.ok() && rename(partial.c_str(), path.c_str()) != 0) {
      fetched = Status::IoError("rename " + partial + ": " + ErrnoText(errno));
    }
    if (!fetched.ok()) {
      return fetched;
    }
    transfer.blobs_transferred++;
    transfer.bytes_transferred += blob.size;
  }
  for (const ManifestItem& item : plan.manifests) {
    Status wrote = WriteFileAtomically(BlobPath(layout_dir, item.digest), item.bytes);
    if (!wrote.ok()) {
      return wrote;
    }
    transfer.manifests++;
  }
  Status synced = SyncDirectory(blob_dir);
  if (!synced.ok()) {
    return synced;
  }
  Status tagged = TagInLayout(layout_dir, tag, plan.manifests.back());
  if (!tagged.ok()) {
    return tagged;
  }
  transfer.digest = plan.manifests.back().digest;
  transfer.media_type = plan.manifests.back().media_type;
  return transfer;
}

}  // namespace cloister::client
