// OCI image layouts made in memory, and the image the sim driver's VMs are saved as.
//
// WriteImageLayout writes one image (a config blob, layers, the manifest naming them) as an OCI
// image layout (oci-layout, index.json, blobs/sha256/...) that RegistryClient::PushImage sends
// as is. Its bytes depend only on its arguments: JSON is written with sorted keys and no
// timestamps, so the same image written twice has the same manifest digest.
//
// SimImage is what "saving" a sim VM makes (the sim driver has no disk): a config naming the VM,
// its cpu and ram, the template and tag it was cloned from and the state it was saved in, and a
// disk layer of kSimDiskBytes pseudo-random bytes seeded by the instance id. A save retried
// after a crash therefore pushes the identical digest, which the registry takes as the same push
// (tags are immutable; the same manifest again is accepted and records nothing).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "log/status.h"

namespace cloister::node {

inline constexpr char kSimConfigMediaType[] = "application/vnd.cloister.vm.config.v1+json";
inline constexpr char kSimDiskMediaType[] = "application/vnd.cloister.vm.disk.v1";
inline constexpr uint64_t kSimDiskBytes = 1ull << 20;

// One blob of an image, in memory.
struct LayoutBlob {
  std::string media_type;
  std::string bytes;
};

// Writes the image (config, then layers in order, manifest annotations) into layout_dir
// (created if needed; files of another image there are left alone, and index.json names only
// this one), its index.json entry named tag. Returns the manifest's digest. Errors: kIoError.
Result<std::string> WriteImageLayout(const std::string& layout_dir, const std::string& tag,
                                     const LayoutBlob& config,
                                     const std::vector<LayoutBlob>& layers,
                                     const std::map<std::string, std::string>& annotations = {});

// bytes pseudo-random bytes, a function of seed only (FNV-1a of seed, then splitmix64).
std::string SeededBytes(const std::string& seed, uint64_t bytes);

// What a saved sim VM's image records.
struct SimImageSpec {
  std::string instance_id;  // Seeds the disk's bytes.
  std::string vm_name;
  uint32_t cpu_cores = 0;
  uint32_t ram_mb = 0;
  std::string template_id;  // The template and tag the VM was cloned from.
  std::string tag;
  bool suspended = false;   // Saved suspended (else stopped).
  std::string description;  // Goes into the manifest's annotations.
};

// The config blob's JSON text for spec (sorted keys, no timestamps).
std::string SimImageConfig(const SimImageSpec& spec);

// Writes spec's image into layout_dir, named tag; returns its manifest digest.
Result<std::string> WriteSimImage(const SimImageSpec& spec, const std::string& layout_dir,
                                  const std::string& tag);

}  // namespace cloister::node
