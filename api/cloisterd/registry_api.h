// RegistryApi: Anka's registry endpoints over the templates the OCI data plane records (issue 8;
// docs/api.md "Registry"), on both listeners.
//
// Registry listener:
//   GET    /registry/vm              [{"<id>":"<name>"}, ...] (v1: one-key maps)
//   GET    /registry/vm?id=          {id, name, versions:[{number, tag, description,
//                                    creation_date, created_ns, manifest, config_file, images,
//                                    size}]}
//   GET    /registry/v2/vm[?id=]     [{id, name, size, tags, latest_tag, last_modified}]
//   DELETE /registry/vm?id=          the template and all its tags
//   DELETE /registry/revert?id=[&tag=|&version=|&number=]  that tag (default: the newest) and
//                                    every later one
//   GET    /registry/vm/info?id=[&tag=]  the tag's VM configuration (its config blob) as JSON
//   GET    /registry/disk            {total, free} bytes of the registry's storage
// Controller listener (the same store when registry and controller run in one process; a
// controller that follows a separate registry forwards DELETE /api/v1/registry/vm, /revert and
// GET /api/v1/registry/disk to it instead, routes.cc):
//   DELETE /api/v1/registry/vm?id=, DELETE /api/v1/registry/revert, GET /api/v1/registry/disk
//   POST   /api/v1/registry/vm/distribute {template_id|id, tag, node_ids}  {request_id}
//   GET    /api/v1/registry/vm/distribute[?id=]   requests with per-node status and progress
//   DELETE /api/v1/registry/vm/distribute[?id=]   forget one, or every finished one
//   DELETE /api/v1/registry/vm/remove?id=[&tag=][&node_id=]  {requests_sent, node_ids}
//
// Threading: the event-loop thread.
#pragma once

#include <functional>
#include <string>

#include "api/http_types.h"
#include "engine/engine.h"
#include "registry/blob_store.h"

namespace cloister::cloisterd {

class RegistryApi {
 public:
  using Respond = std::function<void(api::Response)>;

  // storage_dir: where blobs live (for /disk); blobs may be null (no local storage).
  RegistryApi(engine::Engine* engine, registry::BlobStore* blobs, std::string storage_dir);

  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }

  // Answers request if its path is one of the endpoints above; false leaves respond untouched.
  bool Handle(const api::Request& request, Respond& respond);

 private:
  void List(const api::Request& request, bool v2, Respond respond);
  void Remove(const api::Request& request, bool revert, Respond respond);
  void Info(const api::Request& request, Respond respond);
  void Disk(Respond respond);
  void Distribute(const api::Request& request, Respond respond);
  void RemoveFromNodes(const api::Request& request, Respond respond);
  const reducers::Template* Find(const std::string& id) const;

  engine::Engine* engine_;
  registry::BlobStore* blobs_;
  std::string storage_dir_;
  const engine::Principal* principal_ = &engine::kAnonymous;
};

}  // namespace cloister::cloisterd
