// ImageCache: the node's local copies of template images, pulled from the controller's registry
// before a clone (or for a distribution request) and deleted on a remove request.
//
// Layout, in DIR (the agent's <data>/images): one OCI image layout per template tag, in
// DIR/<template id>/<tag>/ (oci-layout, index.json naming the tag, blobs/sha256/...), exactly as
// RegistryClient::PullImage writes it (and `skopeo copy oci:DIR/<id>/<tag>:<tag> ...` reads it).
//
// Atomicity. An image is filled in a staging directory, DIR/.staging/<template id>/<tag>/, and
// renamed to its final name only when complete and checked (Install: index.json names the
// expected manifest digest for the tag and the manifest blob hashes to it), then the parent
// directory is fsynced. So a crash never leaves a half image under a final name: what List and
// Find see is complete. A staging directory a crash left behind is reused by the next Pull of
// that tag (PullImage keeps blobs already there with the right digest and resumes a blob's
// .partial file). Replacing and removing rename the old layout into DIR/.trash/ first and delete
// it from there; Open empties the trash a crash left.
//
// Names: a template id and a tag are each 1..128 of [A-Za-z0-9_.-], not starting with '.'
// (anything else is kInvalidArgument: they become directory names).
//
// What "cached" means: DIR/<id>/<tag> exists and its index.json names a manifest digest. Find
// and List do not hash the blobs (Install checked them once, PullImage as they streamed).
//
// Thread-safety: all methods are thread-safe. Pull does its network work without the cache's
// lock (List and Find answer meanwhile); a second Pull or a Remove of a tag whose Pull is under
// way is kBusy.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "log/status.h"

namespace cloister::client {
class RegistryClient;
}

namespace cloister::node {

struct CachedImage {
  std::string template_id;
  std::string tag;
  std::string digest;  // The tag's manifest digest, as its index.json names it.

  bool operator==(const CachedImage&) const = default;
};

// A pull's progress in percent (0..100), as its blobs arrive; called on the pulling thread.
using PullProgress = std::function<void(int percent)>;

class ImageCache {
 public:
  // Opens (creating) the cache in dir and empties DIR/.trash. Errors: kIoError.
  static Result<std::unique_ptr<ImageCache>> Open(const std::string& dir);

  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  const std::string& dir() const { return dir_; }
  // DIR/<template_id>/<tag> and DIR/.staging/<template_id>/<tag> (no check of the names).
  std::string LayoutPath(const std::string& template_id, const std::string& tag) const;
  std::string StagingPath(const std::string& template_id, const std::string& tag) const;

  // The cached tag's manifest digest, or nullopt when it is not cached. No network.
  Result<std::optional<std::string>> Find(const std::string& template_id,
                                          const std::string& tag) const;

  // Makes sure template_id:tag, whose manifest is digest, is cached: nothing to do (false, no
  // network) when it is; otherwise pulls it from the registry's repository template_id into
  // staging, checks that the tag's manifest is digest (kCorruption otherwise, and the staging
  // directory is deleted so that nothing of another image is kept), installs it and returns
  // true. A cached copy of the tag with another digest (the tag was reverted and pushed again) is
  // replaced. A transport failure keeps the staging directory for the next attempt. Errors: the
  // client's (kNotFound: no such manifest in the registry; kIoError: the network), kBusy,
  // kInvalidArgument (names, digest).
  Result<bool> Pull(client::RegistryClient* client, const std::string& template_id,
                    const std::string& tag, const std::string& digest,
                    const PullProgress& progress = {});

  // The steps of Pull, for the tests and for images made locally.
  // Stage: the staging directory for template_id:tag, created if missing (an earlier attempt's
  // content is kept, to be reused).
  Result<std::string> Stage(const std::string& template_id, const std::string& tag);
  // Install: checks that the staging directory holds tag with manifest digest (kCorruption
  // otherwise; the staging directory is left as it is) and renames it to its final name,
  // replacing a cached copy.
  Status Install(const std::string& template_id, const std::string& tag, const std::string& digest);

  // Deletes template_id:tag, or every tag of template_id when tag is empty, and their staging
  // directories. What is not cached is no error (a resent remove request).
  Status Remove(const std::string& template_id, const std::string& tag);

  // Every cached image, by template id then tag. A tag directory whose index.json is unreadable
  // is left out.
  Result<std::vector<CachedImage>> List() const;
  // The template ids with at least one cached tag, sorted (what the heartbeat reports).
  std::vector<std::string> TemplateIds() const;

 private:
  explicit ImageCache(std::string dir) : dir_(std::move(dir)) {}
  // Moves path (if it exists) into the trash and deletes it; caller holds mu_.
  Status DiscardLocked(const std::string& path);

  const std::string dir_;
  mutable std::mutex mu_;
  std::set<std::pair<std::string, std::string>> pulling_;  // Guarded by mu_.
  uint64_t trash_seq_ = 0;                                 // Guarded by mu_.
};

// 1..128 of [A-Za-z0-9_.-], not starting with '.'.
bool ValidCacheName(const std::string& name);

}  // namespace cloister::node
