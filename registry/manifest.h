// Manifests and names of the OCI Distribution API (issue 8): what a pushed manifest refers to,
// and the grammar of repository names, tags and digests. Pure functions; no I/O.
//
// A manifest is accepted when it is JSON with schemaVersion 2 and the shape of its media type:
//   OCI image manifest   application/vnd.oci.image.manifest.v1+json
//   Docker image v2      application/vnd.docker.distribution.manifest.v2+json
//     -> config and layers are blobs (each {mediaType, digest, size})
//   OCI image index      application/vnd.oci.image.index.v1+json
//   Docker list          application/vnd.docker.distribution.manifest.list.v2+json
//     -> manifests are other manifests of the same repository
// The media type is the request's Content-Type, else the document's "mediaType". A document that
// names a different mediaType than the Content-Type is refused (OCI 1.1). Anything else (Docker
// schema 1, unknown types) is refused with a message naming why.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "log/status.h"

namespace cloister::registry {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
};

struct ParsedManifest {
  std::string media_type;
  bool index = false;                // An index or list: references are manifests.
  std::vector<Descriptor> references;  // config first, then layers; or the index's manifests.
  std::string description;           // annotations["org.opencontainers.image.description"].
};

// Parses manifest bytes pushed with content_type (may be empty). kInvalidArgument with the reason
// for anything not accepted (OCI answers MANIFEST_INVALID).
Result<ParsedManifest> ParseManifest(std::string_view bytes, std::string_view content_type);

// OCI repository name: path components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by '/', at most
// 255 characters in all.
bool IsRepositoryName(std::string_view name);
// OCI tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
bool IsTag(std::string_view tag);
// "sha256:<64 lowercase hex>" (the only algorithm cloister stores).
bool IsSha256Digest(std::string_view digest);

// "sha256:<hex>" of bytes.
std::string Sha256Digest(std::string_view bytes);

// A single "bytes=first-last" (or "bytes=first-") Range header against a body of size bytes.
// Returns false when the header is not one satisfiable range of that form (the caller then
// answers 416 or, for a syntax it does not know, the whole body).
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;  // Inclusive.
};
enum class RangeParse { kNone, kRange, kUnsatisfiable };
RangeParse ParseRange(std::string_view header, uint64_t size, ByteRange* range);

// A request path of the OCI Distribution API, split (segments after the name are percent-decoded,
// so "sha256%3A..." reads as "sha256:..."). kUnknown for a path under /v2/ of no known shape.
struct OciPath {
  enum class Kind { kUnknown, kBase, kCatalog, kTags, kManifest, kBlob, kUploads, kUpload };
  Kind kind = Kind::kUnknown;
  std::string name;       // The repository.
  std::string reference;  // A tag or digest (kManifest), a digest (kBlob), an upload id.
  // The route-table pattern of this kind: "/v2/{name}/blobs/{digest}" ("" for kUnknown).
  const char* pattern = "";
};
OciPath ParseOciPath(std::string_view path);

}  // namespace cloister::registry
