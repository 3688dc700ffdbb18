// OciApi: the OCI Distribution v1.1 data plane on the registry listener (issue 8; docs/registry.md).
//
//   GET    /v2/                                  version check (200 "{}")
//   GET    /v2/_catalog[?n=&last=]               {"repositories":[template names]}
//   GET    /v2/<name>/tags/list[?n=&last=]       {"name","tags"} in lexical order, Link: next
//   GET    /v2/<name>/manifests/<tag|digest>     the manifest bytes as pushed (HEAD: headers)
//   PUT    /v2/<name>/manifests/<tag|digest>     201; records ManifestPushed (a new tag is the
//                                                template's next version; tags are immutable)
//   DELETE /v2/<name>/manifests/<tag|digest>     202; the manifest and the tags naming it
//   GET    /v2/<name>/blobs/<digest>             the blob, streamed from disk; Range: one range
//   POST   /v2/<name>/blobs/uploads/             202 + Location (a new upload); ?digest= with the
//                                                body: 201 (monolithic); ?mount=&from=: 201 if
//                                                the blob is held, else a new upload (202)
//   GET    /v2/<name>/blobs/uploads/<id>         204 + Range: what was received
//   PATCH  /v2/<name>/blobs/uploads/<id>         a chunk (Content-Range must start at the end)
//   PUT    /v2/<name>/blobs/uploads/<id>?digest= the last chunk (optional) and the digest: 201
//   DELETE /v2/<name>/blobs/uploads/<id>         204; the upload is dropped
//
// <name> is a template: its id, or its name (the first push of an unknown name creates the
// template). Blob bodies stream to and from disk (registry/blob_store.h): memory does not grow
// with a blob's size. Errors are OCI's {"errors":[{"code","message","detail"}]}.
//
// Authorization happens before (route_table.cc: the registry permissions of each route); with
// resource management on, a template's resource permissions are checked here through the
// callback (pull to read, push_tag to add a tag to an existing template, delete_revert to
// delete).
//
// Threading: the event-loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/cloisterd/blob_io.h"
#include "api/http_types.h"
#include "engine/clock.h"
#include "engine/engine.h"
#include "registry/blob_store.h"
#include "registry/manifest.h"

namespace cloister::cloisterd {

// {"errors":[{"code":code,"message":message,"detail":null}]} with status, application/json.
api::Response OciError(int status, std::string_view code, std::string_view message);

// A cloisterd answer in the Anka envelope (401, 403, 404, 405, 429...) as an OCI error, with
// WWW-Authenticate: Basic on 401 so that OCI clients offer their credentials. Other responses
// are returned unchanged.
api::Response OciFromEnvelope(api::Response response);

class OciApi {
 public:
  using Respond = std::function<void(api::Response)>;
  // May the principal use template_id with a template resource permission? false once it has
  // answered (403 and an AccessDenied event).
  using ResourceCheck = std::function<bool(const api::Request& request,
                                           const std::string& template_id,
                                           const char* permission, Respond& respond)>;

  // Uploads idle longer than this are dropped by Tick.
  static constexpr int64_t kUploadIdleNs = 30LL * 60 * 1'000'000'000;
  // Uploads open at once; more are refused (429-like TOOMANYREQUESTS).
  static constexpr size_t kUploadsMax = 1024;
  // A manifest body is buffered (not streamed): its bound.
  static constexpr size_t kManifestBytesMax = 4 * 1024 * 1024;

  // clock: wall time for the uploads' idle deadline.
  OciApi(engine::Engine* engine, registry::BlobStore* blobs, engine::Clock* clock);

  // Runs work on another thread, then after on this one (the event loop's thread pool); by
  // default both run at once, here. Blob commits (fsync, rename) go there, so that one
  // upload's fsync neither stalls the loop nor waits for another's.
  using Offload = cloisterd::Offload;

  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }
  void SetResourceCheck(ResourceCheck check) { resource_check_ = std::move(check); }
  void SetOffload(Offload offload) { offload_ = std::move(offload); }

  // For a /v2/ request with a body: the sink of a blob upload (PATCH or PUT of an upload, POST
  // with ?digest=), or nullptr to buffer it (manifests). Authentication and the route's
  // permission were checked by the caller. Sets *reject for an unknown upload or a chunk that
  // does not start where the upload ends.
  std::shared_ptr<api::BodySink> StreamBody(const api::Request& head,
                                            std::optional<api::Response>* reject);

  // Answers any request under /v2/ (the route table has admitted it).
  void Handle(const api::Request& request, Respond respond);

  // Drops uploads idle for kUploadIdleNs (now_ns: wall clock, as the clock gives it).
  void Tick(int64_t now_ns);

 private:
  struct Upload {
    std::string repository;
    int64_t touched_ns = 0;
    // The body being received into it, if any: an upload is never dropped while its bytes
    // arrive (however long a large blob takes), only once idle between requests.
    std::weak_ptr<api::BodySink> writer;
  };

  void Catalog(const api::Request& request, Respond respond);
  void Tags(const api::Request& request, const registry::OciPath& path, Respond respond);
  void GetManifest(const api::Request& request, const registry::OciPath& path, Respond respond);
  void PutManifest(const api::Request& request, const registry::OciPath& path, Respond respond);
  void DeleteManifest(const api::Request& request, const registry::OciPath& path,
                      Respond respond);
  void GetBlob(const api::Request& request, const registry::OciPath& path, Respond respond);
  void StartUpload(const api::Request& request, const registry::OciPath& path, Respond respond);
  void UploadStatus(const api::Request& request, const registry::OciPath& path, Respond respond);
  void Chunk(const api::Request& request, const registry::OciPath& path, Respond respond);
  void FinishUpload(const api::Request& request, const registry::OciPath& path,
                    const std::string& upload_id, Respond respond);
  void CancelUpload(const registry::OciPath& path, Respond respond);

  // The template a repository name or id names; nullptr if none.
  const reducers::Template* FindTemplate(const std::string& name) const;
  // The 202/204 answer about an upload: Location, Range, Docker-Upload-UUID.
  api::Response UploadResponse(int status, const std::string& name, const std::string& id);
  // A new upload for repository; nullopt once it has answered (too many uploads, disk error).
  std::optional<std::string> NewUpload(const std::string& repository, Respond& respond);
  // Whether a manifest of t is, or refers to, digest (false for no template).
  static bool Holds(const reducers::Template* t, const std::string& digest);
  // Resource permission check (true when no callback is set, or the template does not exist).
  bool MayUse(const api::Request& request, const reducers::Template* t, const char* permission,
              Respond& respond);

  engine::Engine* engine_;
  registry::BlobStore* blobs_;
  engine::Clock* clock_;
  const engine::Principal* principal_ = &engine::kAnonymous;
  ResourceCheck resource_check_;
  Offload offload_;
  std::map<std::string, Upload> uploads_;  // By upload id.
};

}  // namespace cloister::cloisterd
