#include "node/sim_image.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "client/registry_client.h"
#include "log/atomic_file.h"

namespace cloister::node {
namespace {

using Json = nlohmann::json;  // std::map underneath: keys are written sorted.

constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";

Json Descriptor(const std::string& media_type, const std::string& digest, uint64_t size) {
  return Json{{"mediaType", media_type}, {"digest", digest}, {"size", size}};
}

// Writes bytes as blob digest in layout_dir (once: a blob's name is its content).
Status WriteBlob(const std::string& layout_dir, const std::string& digest,
                 const std::string& bytes) {
  const std::string path = layout_dir + "/blobs/sha256/" + digest.substr(7);
  std::error_code error;
  if (std::filesystem::exists(path, error) &&
      std::filesystem::file_size(path, error) == bytes.size()) {
    return Status::Ok();
  }
  return log::WriteFileAtomic(path, bytes, 0644);
}

}  // namespace

Result<std::string> WriteImageLayout(const std::string& layout_dir, const std::string& tag,
                                     const LayoutBlob& config,
                                     const std::vector<LayoutBlob>& layers,
                                     const std::map<std::string, std::string>& annotations) {
  std::error_code error;
  std::filesystem::create_directories(layout_dir + "/blobs/sha256", error);
  if (error) {
    return Status::IoError("create " + layout_dir + "/blobs/sha256: " + error.message());
  }
  const std::string config_digest = client::Sha256Digest(config.bytes);
  Status wrote = WriteBlob(layout_dir, config_digest, config.bytes);
  Json manifest{{"schemaVersion", 2},
                {"mediaType", client::kOciManifestType},
                {"config", Descriptor(config.media_type, config_digest, config.bytes.size())},
                {"layers", Json::array()}};
  for (const LayoutBlob& layer : layers) {
    if (!wrote.ok()) {
      return wrote;
    }
    const std::string digest = client::Sha256Digest(layer.bytes);
    wrote = WriteBlob(layout_dir, digest, layer.bytes);
    manifest["layers"].push_back(Descriptor(layer.media_type, digest, layer.bytes.size()));
  }
  if (!annotations.empty()) {
    manifest["annotations"] = annotations;
  }
  const std::string manifest_bytes = manifest.dump();
  const std::string manifest_digest = client::Sha256Digest(manifest_bytes);
  if (wrote.ok()) {
    wrote = WriteBlob(layout_dir, manifest_digest, manifest_bytes);
  }
  Json entry = Descriptor(client::kOciManifestType, manifest_digest, manifest_bytes.size());
  entry["annotations"] = {{kRefNameAnnotation, tag}};
  const Json index{{"schemaVersion", 2},
                   {"mediaType", client::kOciIndexType},
                   {"manifests", Json::array({entry})}};
  if (wrote.ok()) {
    wrote =
        log::WriteFileAtomic(layout_dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})", 0644);
  }
  if (wrote.ok()) {
    wrote = log::WriteFileAtomic(layout_dir + "/index.json", index.dump(), 0644);
  }
  if (!wrote.ok()) {
    return wrote;
  }
  return manifest_digest;
}

std::string SeededBytes(const std::string& seed, uint64_t bytes) {
  uint64_t state = 14695981039346656037ull;  // FNV-1a 64.
  for (unsigned char c : seed) {
    state = (state ^ c) * 1099511628211ull;
  }
  std::string out;
  out.reserve(bytes);
  while (out.size() < bytes) {
    // splitmix64.
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    for (int i = 0; i < 8 && out.size() < bytes; i++) {
      out.push_back(static_cast<char>(z >> (8 * i)));
    }
  }
  return out;
}

std::string SimImageConfig(const SimImageSpec& spec) {
  const Json config{{"name", spec.vm_name},
                    {"hypervisor", "sim"},
                    {"cpu_cores", spec.cpu_cores},
                    {"ram_mb", spec.ram_mb},
                    {"source", {{"template_id", spec.template_id}, {"tag", spec.tag}}},
                    {"state", spec.suspended ? "suspended" : "stopped"},
                    {"disk_bytes", kSimDiskBytes}};
  return config.dump();
}

Result<std::string> WriteSimImage(const SimImageSpec& spec, const std::string& layout_dir,
                                  const std::string& tag) {
  std::map<std::string, std::string> annotations;
  if (!spec.description.empty()) {
    annotations["org.opencontainers.image.description"] = spec.description;
  }
  return WriteImageLayout(layout_dir, tag, {kSimConfigMediaType, SimImageConfig(spec)},
                          {{kSimDiskMediaType, SeededBytes(spec.instance_id, kSimDiskBytes)}},
                          annotations);
}

}  // namespace cloister::node
