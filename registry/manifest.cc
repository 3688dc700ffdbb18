#include "registry/manifest.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

namespace cloister::registry {
namespace {

using Json = nlohmann::json;

bool LowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
bool IsComponent(std::string_view c) {
  size_t i = 0;
  while (i < c.size()) {
    if (!LowerAlnum(c[i])) {
      return false;
    }
    while (i < c.size() && LowerAlnum(c[i])) {
      i++;
    }
    if (i == c.size()) {
      return true;
    }
    // A separator: ".", "_", "__" or "-"+, then alphanumerics again.
    if (c[i] == '.') {
      i++;
    } else if (c[i] == '_') {
      i += c.substr(i, 2) == "__" ? 2 : 1;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') {
        i++;
      }
    } else {
      return false;
    }
    if (i == c.size()) {
      return false;
    }
  }
  return !c.empty();
}

Result<Descriptor> ReadDescriptor(const Json& j, const std::string& where) {
  if (!j.is_object()) {
    return Status::InvalidArgument(where + " is not an object");
  }
  Descriptor d;
  auto media = j.find("mediaType");
  auto digest = j.find("digest");
  auto size = j.find("size");
  if (media == j.end() || !media->is_string()) {
    return Status::InvalidArgument(where + ".mediaType is missing");
  }
  if (digest == j.end() || !digest->is_string() || !IsSha256Digest(digest->get<std::string>())) {
    return Status::InvalidArgument(where + ".digest is not sha256:<64 lowercase hex>");
  }
  if (size == j.end() || !size->is_number_unsigned()) {
    return Status::InvalidArgument(where + ".size is not a non-negative integer");
  }
  d.media_type = media->get<std::string>();
  d.digest = digest->get<std::string>();
  d.size = size->get<uint64_t>();
  return d;
}

}  // namespace

Result<ParsedManifest> ParseManifest(std::string_view bytes, std::string_view content_type) {
  Json doc = Json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::InvalidArgument("the manifest is not a JSON object");
  }
  auto version = doc.find("schemaVersion");
  if (version == doc.end() || !version->is_number_integer() || version->get<int64_t>() != 2) {
    return Status::InvalidArgument("schemaVersion must be 2");
  }
  std::string declared;
  if (auto media = doc.find("mediaType"); media != doc.end()) {
    if (!media->is_string()) {
      return Status::InvalidArgument("mediaType is not a string");
    }
    declared = media->get<std::string>();
  }
  // Content-Type parameters ("; charset=utf-8") are not part of the type.
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') {
    type.remove_suffix(1);
  }
  ParsedManifest parsed;
  parsed.media_type = !type.empty() ? std::string(type) : declared;
  if (!declared.empty() && !type.empty() && declared != type) {
    return Status::InvalidArgument("mediaType " + declared + " does not match Content-Type " +
                                   std::string(type));
  }
  if (parsed.media_type.empty() && doc.contains("manifests")) {
    parsed.media_type = kOciIndex;  // OCI lets an index omit mediaType.
  } else if (parsed.media_type.empty()) {
    parsed.media_type = kOciManifest;
  }
  const std::string& m = parsed.media_type;
  parsed.index = m == kOciIndex || m == kDockerList;
  if (!parsed.index && m != kOciManifest && m != kDockerManifest) {
    return Status::InvalidArgument("unsupported manifest media type " + m.substr(0, 120));
  }
  if (parsed.index) {
    auto manifests = doc.find("manifests");
    if (manifests == doc.end() || !manifests->is_array()) {
      return Status::InvalidArgument("an index needs a manifests array");
    }
    for (size_t i = 0; i < manifests->size(); i++) {
      Result<Descriptor> d = ReadDescriptor((*manifests)[i], "manifests[" + std::to_string(i) +
                                                                 "]");
      if (!d.ok()) {
        return d.status();
      }
      parsed.references.push_back(std::move(*d));
    }
  } else {
    auto config = doc.find("config");
    if (config == doc.end()) {
      return Status::InvalidArgument("an image manifest needs a config");
    }
    Result<Descriptor> c = ReadDescriptor(*config, "config");
    if (!c.ok()) {
      return c.status();
    }
    parsed.references.push_back(std::move(*c));
    auto layers = doc.find("layers");
    if (layers == doc.end() || !layers->is_array()) {
      return Status::InvalidArgument("an image manifest needs a layers array");
    }
    for (size_t i = 0; i < layers->size(); i++) {
      Result<Descriptor> d = ReadDescriptor((*layers)[i], "layers[" + std::to_string(i) + "]");
      if (!d.ok()) {
        return d.status();
      }
      parsed.references.push_back(std::move(*d));
    }
  }
  if (auto notes = doc.find("annotations"); notes != doc.end() && notes->is_object()) {
    auto text = notes->find("org.opencontainers.image.description");
    if (text != notes->end() && text->is_string()) {
      parsed.description = text->get<std::string>().substr(0, 1024);
    }
  }
  return parsed;
}

bool IsRepositoryName(std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return false;
  }
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    if (!IsComponent(name.substr(start, slash - start))) {
      return false;
    }
    if (slash == std::string_view::npos) {
      return true;
    }
    start = slash + 1;
  }
}

bool IsTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) {
    return false;
  }
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
  };
  if (!word(tag[0])) {
    return false;
  }
  for (char c : tag.substr(1)) {
    if (!word(c) && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool IsSha256Digest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || !digest.starts_with(kPrefix)) {
    return false;
  }
  for (char c : digest.substr(kPrefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::string Sha256Digest(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < length; i++) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

RangeParse ParseRange(std::string_view header, uint64_t size, ByteRange* range) {
  constexpr std::string_view kUnit = "bytes=";
  if (!header.starts_with(kUnit)) {
    return RangeParse::kNone;
  }
  header.remove_prefix(kUnit.size());
  const size_t dash = header.find('-');
  if (dash == std::string_view::npos || dash == 0 || header.find(',') != header.npos) {
    return RangeParse::kNone;  // Suffix ranges and multiple ranges: the whole body instead.
  }
  auto number = [](std::string_view text, uint64_t* value) {
    if (text.empty() || text.size() > 19) {
      return false;
    }
    *value = 0;
    for (char c : text) {
      if (c < '0' || c > '9') {
        return false;
      }
      *value = *value * 10 + static_cast<uint64_t>(c - '0');
    }
    return true;
  };
  uint64_t first = 0;
  uint64_t last = size == 0 ? 0 : size - 1;
  const std::string_view tail = header.substr(dash + 1);
  if (!number(header.substr(0, dash), &first) || (!tail.empty() && !number(tail, &last))) {
    return RangeParse::kNone;
  }
  if (first >= size || last < first) {
    return RangeParse::kUnsatisfiable;
  }
  range->first = first;
  range->last = std::min(last, size - 1);
  return RangeParse::kRange;
}

namespace {

std::string PercentDecoded(std::string_view text) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  std::string out;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 &&
        hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

OciPath ParseOciPath(std::string_view path) {
  using Kind = OciPath::Kind;
  OciPath p;
  if (!path.starts_with("/v2/")) {
    return p;
  }
  std::string_view rest = path.substr(4);
  if (rest.empty()) {
    p.kind = Kind::kBase;
    p.pattern = "/v2/";
    return p;
  }
  if (rest == "_catalog") {
    p.kind = Kind::kCatalog;
    p.pattern = "/v2/_catalog";
    return p;
  }
  // The name may hold slashes: the last marker segment decides the kind.
  struct Marker {
    std::string_view text;
    Kind kind;
    const char* pattern;
  };
  static constexpr Marker kMarkers[] = {
      {"/blobs/uploads/", Kind::kUpload, "/v2/{name}/blobs/uploads/{uuid}"},
      {"/manifests/", Kind::kManifest, "/v2/{name}/manifests/{reference}"},
      {"/blobs/", Kind::kBlob, "/v2/{name}/blobs/{digest}"},
  };
  if (rest.ends_with("/tags/list")) {
    p.name = rest.substr(0, rest.size() - 10);
    p.kind = p.name.empty() ? Kind::kUnknown : Kind::kTags;
    p.pattern = p.name.empty() ? "" : "/v2/{name}/tags/list";
    return p;
  }
  if (rest.ends_with("/blobs/uploads/") || rest.ends_with("/blobs/uploads")) {
    p.name = rest.substr(0, rest.rfind("/blobs/uploads"));
    p.kind = p.name.empty() ? Kind::kUnknown : Kind::kUploads;
    p.pattern = p.name.empty() ? "" : "/v2/{name}/blobs/uploads/";
    return p;
  }
  for (const Marker& marker : kMarkers) {
    const size_t at = rest.rfind(marker.text);
    if (at == std::string_view::npos || at == 0) {
      continue;
    }
    const std::string_view tail = rest.substr(at + marker.text.size());
    if (tail.empty() || tail.find('/') != std::string_view::npos) {
      continue;
    }
    p.name = rest.substr(0, at);
    p.reference = PercentDecoded(tail);
    p.kind = marker.kind;
    p.pattern = marker.pattern;
    return p;
  }
  return p;
}

}  // namespace cloister::registry
