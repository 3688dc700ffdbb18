#include "node/image_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "client/registry_client.h"

namespace cloister::node {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
constexpr size_t kNameBytesMax = 128;
constexpr uint64_t kIndexBytesMax = 4ull << 20;

Status CheckNames(const std::string& template_id, const std::string& tag) {
  if (!ValidCacheName(template_id)) {
    return Status::InvalidArgument("template id " + template_id.substr(0, 64) +
                                   ": not 1..128 of [A-Za-z0-9_.-] (not starting with '.')");
  }
  if (!ValidCacheName(tag)) {
    return Status::InvalidArgument("tag " + tag.substr(0, 64) +
                                   ": not 1..128 of [A-Za-z0-9_.-] (not starting with '.')");
  }
  return Status::Ok();
}

// The whole of a small file; kNotFound if it is missing.
Result<std::string> ReadSmall(const std::string& path, uint64_t bytes_max) {
  std::error_code error;
  const uintmax_t size = fs::file_size(path, error);
  if (error) {
    return error == std::errc::no_such_file_or_directory
               ? Status::NotFound(path + ": not found")
               : Status::IoError(path + ": " + error.message());
  }
  if (size > bytes_max) {
    return Status::Corruption(path + ": larger than " + std::to_string(bytes_max) + " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    return Status::IoError(path + ": unreadable");
  }
  return text.str();
}

// The manifest digest layout_dir's index.json names for tag.
Result<std::string> LayoutDigest(const std::string& layout_dir, const std::string& tag) {
  Result<std::string> text = ReadSmall(layout_dir + "/index.json", kIndexBytesMax);
  if (!text.ok()) {
    return text.status();
  }
  const Json index = Json::parse(*text, nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return Status::Corruption(layout_dir + "/index.json: not an OCI index");
  }
  for (const Json& entry : index["manifests"]) {
    if (!entry.is_object() || !entry.contains("annotations") || !entry["annotations"].is_object() ||
        !entry.contains("digest") || !entry["digest"].is_string()) {
      continue;
    }
    if (entry["annotations"].value(kRefNameAnnotation, std::string()) == tag) {
      return entry["digest"].get<std::string>();
    }
  }
  return Status::NotFound(layout_dir + "/index.json: no image named " + tag);
}

Status SyncDirectory(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IoError("open " + path + ": " + std::strerror(errno));
  }
  const int synced = fsync(fd);
  const int saved = errno;
  close(fd);
  if (synced != 0) {
    return Status::IoError("fsync " + path + ": " + std::strerror(saved));
  }
  return Status::Ok();
}

bool IsDirectory(const std::string& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

// Removes dir if it is an empty directory (best effort: it may hold other tags).
void RemoveIfEmpty(const std::string& dir) {
  std::error_code error;
  if (fs::is_directory(dir, error) && fs::is_empty(dir, error)) {
    fs::remove(dir, error);
  }
}

}  // namespace

bool ValidCacheName(const std::string& name) {
  if (name.empty() || name.size() > kNameBytesMax || name[0] == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

Result<std::unique_ptr<ImageCache>> ImageCache::Open(const std::string& dir) {
  std::error_code error;
  for (const std::string sub : {"/.staging", "/.trash"}) {
    fs::create_directories(dir + sub, error);
    if (error) {
      return Status::IoError("create " + dir + sub + ": " + error.message());
    }
  }
  // What a crash left in the trash was on its way out.
  for (const fs::directory_entry& entry : fs::directory_iterator(dir + "/.trash", error)) {
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
  if (error) {
    return Status::IoError("list " + dir + "/.trash: " + error.message());
  }
  return std::unique_ptr<ImageCache>(new ImageCache(dir));
}

std::string ImageCache::LayoutPath(const std::string& template_id, const std::string& tag) const {
  return dir_ + "/" + template_id + "/" + tag;
}

std::string ImageCache::StagingPath(const std::string& template_id, const std::string& tag) const {
  return dir_ + "/.staging/" + template_id + "/" + tag;
}

Result<std::optional<std::string>> ImageCache::Find(const std::string& template_id,
                                                    const std::string& tag) const {
  Status names = CheckNames(template_id, tag);
  if (!names.ok()) {
    return names;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const std::string layout = LayoutPath(template_id, tag);
  if (!IsDirectory(layout)) {
    return std::optional<std::string>();
  }
  Result<std::string> digest = LayoutDigest(layout, tag);
  if (!digest.ok()) {
    // Installed layouts always name their tag; one that does not was damaged from outside.
    if (digest.status().code() == StatusCode::kIoError) {
      return digest.status();
    }
    return std::optional<std::string>();
  }
  return std::optional<std::string>(std::move(digest).value());
}

Result<std::string> ImageCache::Stage(const std::string& template_id, const std::string& tag) {
  Status names = CheckNames(template_id, tag);
  if (!names.ok()) {
    return names;
  }
  const std::string staging = StagingPath(template_id, tag);
  std::error_code error;
  fs::create_directories(staging, error);
  if (error) {
    return Status::IoError("create " + staging + ": " + error.message());
  }
  return staging;
}

Status ImageCache::Install(const std::string& template_id, const std::string& tag,
                           const std::string& digest) {
  Status names = CheckNames(template_id, tag);
  if (!names.ok()) {
    return names;
  }
  Status valid = client::ValidateDigest(digest);
  if (!valid.ok()) {
    return valid;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const std::string staging = StagingPath(template_id, tag);
  Result<std::string> named = LayoutDigest(staging, tag);
  if (!named.ok()) {
    return Status::Corruption("install " + template_id + ":" + tag + ": " +
                              named.status().message());
  }
  if (*named != digest) {
    return Status::Corruption("install " + template_id + ":" + tag + ": the staged image is " +
                              *named + ", not " + digest);
  }
  const std::string manifest_path = staging + "/blobs/sha256/" + digest.substr(7);
  Result<std::string> manifest = ReadSmall(manifest_path, client::kManifestBytesMax);
  if (!manifest.ok() || client::Sha256Digest(*manifest) != digest) {
    return Status::Corruption(
        "install " + template_id + ":" + tag + ": " + manifest_path +
        (manifest.ok() ? " does not hash to its name" : ": " + manifest.status().message()));
  }
  const std::string parent = dir_ + "/" + template_id;
  const std::string layout = LayoutPath(template_id, tag);
  std::error_code error;
  fs::create_directories(parent, error);
  if (error) {
    return Status::IoError("create " + parent + ": " + error.message());
  }
  if (IsDirectory(layout)) {
    Status discarded = DiscardLocked(layout);
    if (!discarded.ok()) {
      return discarded;
    }
  }
  if (rename(staging.c_str(), layout.c_str()) != 0) {
    return Status::IoError("rename " + staging + " to " + layout + ": " + std::strerror(errno));
  }
  Status synced = SyncDirectory(parent);
  if (synced.ok()) {
    synced = SyncDirectory(dir_);
  }
  RemoveIfEmpty(dir_ + "/.staging/" + template_id);
  return synced;
}

Status ImageCache::DiscardLocked(const std::string& path) {
  if (!fs::exists(path)) {
    return Status::Ok();
  }
  const std::string trash =
      dir_ + "/.trash/" + std::to_string(getpid()) + "-" + std::to_string(++trash_seq_);
  if (rename(path.c_str(), trash.c_str()) != 0) {
    return Status::IoError("rename " + path + " to " + trash + ": " + std::strerror(errno));
  }
  std::error_code error;
  fs::remove_all(trash, error);  // Left over on failure: Open empties the trash.
  return Status::Ok();
}

Status ImageCache::Remove(const std::string& template_id, const std::string& tag) {
  Status names = CheckNames(template_id, tag.empty() ? "all" : tag);
  if (!names.ok()) {
    return names;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, pulled_tag] : pulling_) {
    if (id == template_id && (tag.empty() || pulled_tag == tag)) {
      return Status::Busy("remove " + template_id + ":" + pulled_tag + ": it is being pulled");
    }
  }
  const std::string parent = dir_ + "/" + template_id;
  const std::vector<std::string> paths =
      tag.empty()
          ? std::vector<std::string>{parent, dir_ + "/.staging/" + template_id}
          : std::vector<std::string>{LayoutPath(template_id, tag), StagingPath(template_id, tag)};
  for (const std::string& path : paths) {
    Status discarded = DiscardLocked(path);
    if (!discarded.ok()) {
      return discarded;
    }
  }
  RemoveIfEmpty(parent);
  RemoveIfEmpty(dir_ + "/.staging/" + template_id);
  return SyncDirectory(dir_);
}

Result<std::vector<CachedImage>> ImageCache::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CachedImage> images;
  std::error_code error;
  for (const fs::directory_entry& template_dir : fs::directory_iterator(dir_, error)) {
    const std::string template_id = template_dir.path().filename().string();
    std::error_code ignored;
    if (!ValidCacheName(template_id) || !template_dir.is_directory(ignored)) {
      continue;  // .staging, .trash
    }
    for (const fs::directory_entry& tag_dir : fs::directory_iterator(template_dir, ignored)) {
      const std::string tag = tag_dir.path().filename().string();
      if (!ValidCacheName(tag) || !tag_dir.is_directory(ignored)) {
        continue;
      }
      Result<std::string> digest = LayoutDigest(tag_dir.path().string(), tag);
      if (digest.ok()) {
        images.push_back({template_id, tag, std::move(digest).value()});
      }
    }
  }
  if (error) {
    return Status::IoError("list " + dir_ + ": " + error.message());
  }
  std::sort(images.begin(), images.end(), [](const CachedImage& a, const CachedImage& b) {
    return std::tie(a.template_id, a.tag) < std::tie(b.template_id, b.tag);
  });
  return images;
}

std::vector<std::string> ImageCache::TemplateIds() const {
  std::vector<std::string> ids;
  Result<std::vector<CachedImage>> images = List();
  if (!images.ok()) {
    return ids;
  }
  for (const CachedImage& image : *images) {
    if (ids.empty() || ids.back() != image.template_id) {
      ids.push_back(image.template_id);
    }
  }
  return ids;
}

Result<bool> ImageCache::Pull(client::RegistryClient* client, const std::string& template_id,
                              const std::string& tag, const std::string& digest,
                              const PullProgress& progress) {
  Status valid = CheckNames(template_id, tag);
  if (valid.ok()) {
    valid = client::ValidateDigest(digest);
  }
  if (!valid.ok()) {
    return valid;
  }
  const auto key = std::make_pair(template_id, tag);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pulling_.insert(key).second) {
      return Status::Busy("pull " + template_id + ":" + tag + ": already being pulled");
    }
  }
  struct Done {
    ImageCache* cache;
    std::pair<std::string, std::string> key;
    ~Done() {
      std::lock_guard<std::mutex> lock(cache->mu_);
      cache->pulling_.erase(key);
    }
  } done{this, key};

  Result<std::optional<std::string>> cached = Find(template_id, tag);
  if (!cached.ok()) {
    return cached.status();
  }
  if (cached->has_value() && **cached == digest) {
    return false;
  }
  // The manifest first, by digest: it says how many bytes the pull moves (for the progress)
  // and a registry that lacks it fails here, before anything is staged.
  Result<client::Manifest> manifest = client->GetManifest(template_id, digest);
  if (!manifest.ok()) {
    return manifest.status();
  }
  uint64_t total = 0;
  const Json parsed = Json::parse(manifest->bytes, nullptr, false);
  if (parsed.is_object()) {
    std::vector<const Json*> blobs;
    if (parsed.contains("config")) blobs.push_back(&parsed["config"]);
    if (parsed.contains("layers") && parsed["layers"].is_array()) {
      for (const Json& layer : parsed["layers"]) blobs.push_back(&layer);
    }
    for (const Json* blob : blobs) {
      if (blob->is_object() && (*blob)["size"].is_number_unsigned()) {
        total += (*blob)["size"].get<uint64_t>();
      }
    }
  }
  Result<std::string> staging = Stage(template_id, tag);
  if (!staging.ok()) {
    return staging.status();
  }
  // An index's children are not counted: its progress goes from 0 to 100 at the end.
  std::map<std::string, uint64_t> arrived;
  int reported = -1;
  const auto report = [&](int percent) {
    if (progress && percent != reported) {
      reported = percent;
      progress(percent);
    }
  };
  report(0);
  client::ImageOptions options;
  options.progress = [&](const std::string& blob, uint64_t done_bytes, uint64_t) {
    arrived[blob] = done_bytes;
    if (total == 0) {
      return;
    }
    uint64_t sum = 0;
    for (const auto& [name, bytes] : arrived) sum += bytes;
    report(static_cast<int>(std::min<uint64_t>(99, sum * 100 / total)));
  };
  Result<client::ImageTransfer> pulled = client->PullImage(template_id, tag, *staging, options);
  std::error_code ignored;
  if (!pulled.ok()) {
    if (pulled.status().code() != StatusCode::kIoError) {
      fs::remove_all(*staging, ignored);  // Not worth resuming (refused, corrupt, absent).
    }
    return pulled.status();
  }
  if (pulled->digest != digest) {
    fs::remove_all(*staging, ignored);
    return Status::Corruption("the registry's " + template_id + ":" + tag + " is " +
                              pulled->digest + ", not the expected " + digest);
  }
  Status installed = Install(template_id, tag, digest);
  if (!installed.ok()) {
    return installed;
  }
  report(100);
  return true;
}

}  // namespace cloister::node
