// RegistryClient: a blocking client for an OCI Distribution v1.1 registry (libcurl), used by
// the `cloister` CLI, the node agent and the registry benchmark.
//
// Each call sends one or a few HTTP requests on this client's one connection (kept alive and
// reused between calls) and returns a Status or Result. Blobs stream between the network and
// files in bounded memory (libcurl's buffers and a 64 KiB read buffer, whatever the blob's
// size); downloads are hashed as they stream and a blob whose bytes do not hash to its digest
// is refused and its file removed.
//
// Authentication is client_auth.h's: a client certificate goes to the TLS handshake, the other
// credentials' headers go on every request (TAP's /tap/v1/hand and /tap/v1/shake are sent to
// this registry's URL). A request answered 401 while an API key's TAP session was used drops
// the session and is sent once more with a fresh one; a request body (a file range) is sent
// again from its start. A second 401 is an error.
//
// Errors: a transport failure (refused, reset, timed out, TLS) is kIoError; a registry answer
// that is not the expected one is mapped from its HTTP status: 404 kNotFound, 401/403 and other
// 4xx kInvalidArgument, 405 kUnsupported, 5xx kIoError; the message names the operation, the
// method and the path (never a query, a host's user info or a header), the HTTP status and the
// OCI error codes the registry gave ("upload blob sha256:ab.. to ci/macos (PUT /v2/ci/macos/
// blobs/uploads/<id>): HTTP 400 DIGEST_INVALID: provided digest did not match uploaded
// content"); a transport failure also names the registry's origin. Bad digests, repository names and
// references are refused before any I/O with kInvalidArgument. Bytes that do not hash to their
// digest are kCorruption. Credentials never appear in a message.
//
// Redirects: only blob downloads follow them (a registry may send those to a CDN; libcurl does
// not send the Authorization header to another host). A Location in an answer (uploads) on
// another origin than the client's URL is used for its path and query only, on this client's
// origin, so that credentials never go to another host.
//
// Not thread-safe: one client per thread (each holds one connection). ClientAuth may be shared.
// Call InitHttpClients() (controller_client.h) once from main before any thread starts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/client_auth.h"
#include "log/status.h"

namespace cloister::client {

namespace internal {
struct RegistryRequest;
struct RegistryReply;
struct BlobBody;
}  // namespace internal

// ---- Limits ----

// A manifest (image manifest or index) larger than this is refused, in either direction; the
// OCI spec names 4 MiB as the size registries should accept.
inline constexpr uint64_t kManifestBytesMax = 4ull << 20;
// An OCI layout's index.json larger than this is refused.
inline constexpr uint64_t kLayoutIndexBytesMax = 4ull << 20;
// The part of an error answer's body kept to build a message.
inline constexpr size_t kErrorBodyBytesMax = 64 << 10;
// ListTags follows at most this many pages.
inline constexpr int kTagPagesMax = 10'000;
// An image (PushImage, PullImage): its manifests (an index, its children, ...), its blobs, and
// how deep indexes may nest.
inline constexpr size_t kImageManifestsMax = 1'000;
inline constexpr size_t kImageBlobsMax = 100'000;
inline constexpr int kImageDepthMax = 4;
// A repository name's length (distribution's limit).
inline constexpr size_t kRepositoryBytesMax = 255;

// ---- Media types ----

inline constexpr char kOciManifestType[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndexType[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kDockerManifestType[] =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerListType[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";

// The four types above: what GetManifest accepts when given no list, and PullImage asks for.
std::vector<std::string> DefaultManifestAccept();

// ---- Validation (no I/O) ----

// "sha256:" + 64 lowercase hex digits; kInvalidArgument saying why otherwise.
Status ValidateDigest(std::string_view digest);
// The OCI grammar: path components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by '/', at most
// kRepositoryBytesMax bytes.
Status ValidateRepository(std::string_view repository);
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
Status ValidateTag(std::string_view tag);
// A tag or a digest.
Status ValidateReference(std::string_view reference);
// "sha256:" + the lowercase hex SHA-256 of bytes.
std::string Sha256Digest(std::string_view bytes);

// ---- The client ----

// Bytes done so far and the total (0 when the registry did not say).
using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct RegistryClientOptions {
  // "http://host:8089" or "https://..."; OCI registries serve /v2/ at their root, so a path
  // here is not used.
  std::string url;
  std::string ca_file;    // HTTPS: the CA to verify the registry with (empty: system CAs).
  bool insecure = false;  // HTTPS: do not verify the registry's certificate.
  std::string cert_file;  // HTTPS: a client certificate (PEM) to present (mTLS).
  std::string key_file;   // Its private key (PEM); empty: in cert_file.
  long connect_timeout_ms = 5000;
  // Bounds each request that moves no blob (ping, manifests, tags, upload sessions).
  long request_timeout_ms = 60'000;
  // A blob transfer fails when no byte moved for this long (it has no overall bound).
  long stall_timeout_ms = 60'000;
  // Credentials' headers, TAP included; null: none. May be shared with other clients.
  std::shared_ptr<ClientAuth> auth;
};

// How UploadBlob sends the bytes (OCI Distribution "pushing blobs").
enum class UploadMode {
  // POST /v2/<name>/blobs/uploads/ (202 + Location), then PUT <location>?digest= with the body.
  kMonolithic,
  // POST, then PATCH chunks of chunk_bytes with Content-Range (each answered 202 with the next
  // Location), then PUT <location>?digest= without a body.
  kChunked,
  // POST /v2/<name>/blobs/uploads/?digest= with the body: one request, 201. A registry that
  // answers 202 + Location instead (docker-registry 2.8 does) gets the body again in a PUT.
  kSingleRequest,
};

struct UploadOptions {
  UploadMode mode = UploadMode::kMonolithic;
  uint64_t chunk_bytes = 16ull << 20;  // kChunked only; at least 1.
  Progress progress;                   // Called as bytes are sent.
};

struct DownloadOptions {
  // An existing dest_path is taken as the blob's first bytes: they are hashed, and the rest is
  // asked for with Range. A registry that ignores Range (200) restarts the file from zero.
  // False: dest_path is truncated first.
  bool resume = false;
  Progress progress;  // Called as bytes arrive (done counts resumed bytes too).
};

struct Manifest {
  std::string bytes;
  std::string media_type;  // The answer's Content-Type.
  std::string digest;      // Of bytes (checked against Docker-Content-Digest when given).
};

// What PushImage and PullImage did.
struct ImageTransfer {
  std::string digest;               // The tagged manifest's.
  std::string media_type;           // Its media type (an image manifest or an index).
  size_t manifests = 0;             // Manifests sent or fetched, the tagged one included.
  size_t blobs = 0;                 // Blobs (configs, layers) the image names.
  size_t blobs_transferred = 0;     // Those sent or fetched; the others were already there.
  uint64_t bytes_transferred = 0;   // Their bytes.
};

struct ImageOptions {
  UploadOptions upload;  // PushImage: how blobs are sent (its progress is per blob).
  // Per blob, as it moves: its digest, bytes done and its size.
  std::function<void(const std::string& digest, uint64_t done, uint64_t total)> progress;
};

class RegistryClient {
 public:
  explicit RegistryClient(RegistryClientOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  const std::string& url() const { return options_.url; }
  // The HTTP status of the last answer received (0: none yet, or a transport failure).
  int last_http_status() const { return last_http_status_; }
  // Connections opened so far (1 while keep-alive holds; more after the registry closed one).
  uint64_t connections_opened() const { return connections_opened_; }

  // GET /v2/: OK on 200. 401 is kInvalidArgument ("authentication required"); any other answer
  // says this is not an OCI registry.
  Status Ping();

  // HEAD /v2/<repository>/blobs/<digest>: the blob's size, or nullopt on 404.
  Result<std::optional<uint64_t>> BlobExists(const std::string& repository,
                                             const std::string& digest);

  // Streams the file at path (which must hold exactly size bytes) as blob digest. The registry
  // checks the digest; a mismatch it refuses is kInvalidArgument, and the message says whether
  // the file's bytes hash to the claimed digest. The blob is in the repository on OK.
  Status UploadBlob(const std::string& repository, const std::string& path,
                    const std::string& digest, uint64_t size, const UploadOptions& options = {});
  // The same for bytes in memory (a config, a small blob); the digest is computed here.
  Result<std::string> UploadBlobBytes(const std::string& repository, const std::string& bytes,
                                      const UploadOptions& options = {});

  // POST /v2/<repository>/blobs/uploads/?mount=<digest>&from=<from_repository>: true if the
  // registry mounted it (201), false if it did not (202: the upload session it opened instead
  // is cancelled).
  Result<bool> MountBlob(const std::string& repository, const std::string& digest,
                         const std::string& from_repository);

  // GET /v2/<repository>/blobs/<digest> into dest_path (see DownloadOptions), hashed as it
  // streams. A mismatch is kCorruption and dest_path is removed; a transport failure leaves it
  // as far as it got, for a resume.
  Status DownloadBlob(const std::string& repository, const std::string& digest,
                      const std::string& dest_path, const DownloadOptions& options = {});

  // GET /v2/<repository>/blobs/<digest> into memory, for small blobs (a config): its bytes,
  // verified (kCorruption otherwise); a blob larger than bytes_max is kInvalidArgument.
  Result<std::string> FetchBlob(const std::string& repository, const std::string& digest,
                                uint64_t bytes_max = kManifestBytesMax);

  // PUT /v2/<repository>/manifests/<reference> with Content-Type media_type: the manifest's
  // digest (the registry's Docker-Content-Digest, which must be that of bytes).
  Result<std::string> PutManifest(const std::string& repository, const std::string& reference,
                                  const std::string& media_type, const std::string& bytes);
  // GET /v2/<repository>/manifests/<reference> with Accept: accept (empty:
  // DefaultManifestAccept()). A digest reference must match the bytes (kCorruption).
  Result<Manifest> GetManifest(const std::string& repository, const std::string& reference,
                               const std::vector<std::string>& accept = {});
  // DELETE /v2/<repository>/manifests/<reference> (a digest; OCI 1.1 also allows a tag).
  Status DeleteManifest(const std::string& repository, const std::string& reference);

  // GET /v2/<repository>/tags/list?n=<n>&last=<last> (n 0: no n; last empty: no last), then
  // each Link: <...>; rel="next" in turn: every tag of every page, in the registry's order.
  Result<std::vector<std::string>> ListTags(const std::string& repository, int n = 0,
                                            const std::string& last = "");

  // Pushes the image tagged tag in the OCI image layout at layout_dir (oci-layout, index.json,
  // blobs/sha256/...): the index.json entry whose org.opencontainers.image.ref.name is tag (or
  // its only entry, when it has one without a name). Every blob is checked with HEAD and sent
  // only if missing; then the manifests, children before the index that names them (by
  // digest); then the tagged one, by tag. Manifests are checked against their digests before
  // they are sent. Image manifests and indexes (OCI and Docker) are supported.
  Result<ImageTransfer> PushImage(const std::string& repository, const std::string& tag,
                                  const std::string& layout_dir, const ImageOptions& options = {});
  // Fetches repository:reference (and, for an index, every manifest it names) into the OCI
  // image layout at layout_dir (created if needed; an existing one is added to): blobs first,
  // each verified, then the manifests, then index.json with the entry for it. Blobs already in
  // the layout with the right digest are not fetched. reference is a tag, or a manifest digest
  // (the manifest is checked against it). A tag's entry is named by the tag (replacing one with
  // the same name) and is readable by `skopeo copy oci:<layout_dir>:<tag> ...`; a digest's entry
  // has no name and is added once.
  Result<ImageTransfer> PullImage(const std::string& repository, const std::string& reference,
                                  const std::string& layout_dir, const ImageOptions& options = {});

 private:
  using Request = internal::RegistryRequest;
  using Reply = internal::RegistryReply;
  using BlobBody = internal::BlobBody;

  // Sends request with the credentials' headers; once more after a 401 that dropped a TAP
  // session. A transport failure is an error; any HTTP answer is a Reply.
  Result<Reply> Send(Request& request);
  // One exchange on this connection with header_lines added.
  Result<Reply> Perform(Request& request, const std::vector<std::string>& header_lines);
  // The absolute URL for a path ("/v2/...") or an answer's Location.
  std::string Resolve(const std::string& path_or_location) const;
  // Opens an upload session (POST, 202): the Location to send to.
  Result<std::string> StartUpload(const std::string& repository, const std::string& what);
  // Sends length bytes of body from offset with PUT <location>?digest= (201).
  Status PutUpload(const std::string& location, const BlobBody& body, uint64_t offset,
                   uint64_t length, const std::string& digest, const std::string& what,
                   const Progress& progress);
  Status UploadChunks(const std::string& repository, const BlobBody& body,
                      const std::string& digest, const UploadOptions& options,
                      const std::string& what);
  Status UploadSingleRequest(const std::string& repository, const BlobBody& body,
                             const std::string& digest, const UploadOptions& options,
                             const std::string& what);
  Status UploadBody(const std::string& repository, const BlobBody& body,
                    const std::string& digest, const UploadOptions& options);
  // DELETE of an upload session, best effort.
  void CancelUpload(const std::string& location);

  RegistryClientOptions options_;
  std::string origin_;    // scheme://host[:port] of options_.url, lower-cased.
  void* curl_ = nullptr;  // CURL*.
  int last_http_status_ = 0;
  uint64_t connections_opened_ = 0;
};

}  // namespace cloister::client
