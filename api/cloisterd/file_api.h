// FileApi: the registry's central file server (issue 8; docs/api.md "Registry", paths are
// cloister's own: Anka's are not public), on the registry listener.
//
//   PUT    /file?path=<relative path>[&digest=sha256:<hex>]   upload_file
//          The body streams into the blob store (sha256 computed as it arrives, bounded
//          memory). A digest that does not match is 400 and nothing is kept. Once the blob is
//          durable a FileStored event names it; re-uploading a path replaces it.
//          {"path","size","digest"}.
//   GET    /file?path=        download_file: the bytes (sendfile over plain TCP); 404 if absent
//   GET    /file              download_file: [{"path","size","digest","stored","stored_by"}]
//   DELETE /file?path=        upload_file (whoever may write a file may remove it): a
//                             FileDeleted event; the blob stays until `cloister registry gc`.
//
// A path is relative, with no empty, "." or ".." segment, no control character or backslash,
// bounded in bytes and segments (engine::FilePathProblem); a bad one is 400 before a byte of the
// body is read, and nothing changes. Answers use the Anka envelope.
//
// Threading: the event-loop thread; blob commits (fsync, rename) run on the offload pool.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "api/cloisterd/blob_io.h"
#include "api/http_types.h"
#include "engine/engine.h"
#include "registry/blob_store.h"

namespace cloister::cloisterd {

class FileApi {
 public:
  using Respond = std::function<void(api::Response)>;

  // blobs must outlive this. offload: as OciApi's (nullptr: run inline).
  FileApi(engine::Engine* engine, registry::BlobStore* blobs, Offload offload);

  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }

  // For PUT /file: the sink the body streams into, or nullptr with *reject set (a bad path or
  // digest, or a storage error). The caller checked credentials and upload_file.
  std::shared_ptr<api::BodySink> StreamBody(const api::Request& head,
                                            std::optional<api::Response>* reject);

  // Answers /file (the route table has admitted the request). False: not /file.
  bool Handle(const api::Request& request, Respond& respond);

 private:
  void Put(const api::Request& request, Respond respond);
  void Get(const api::Request& request, Respond respond);
  void List(Respond respond);
  void Delete(const api::Request& request, Respond respond);
  // Seals upload_id (its bytes are size long), checks the claimed digest, commits off the loop,
  // then records FileStored and answers.
  void Store(const api::Request& request, const std::string& path, const std::string& upload_id,
             uint64_t size, Respond respond);

  engine::Engine* engine_;
  registry::BlobStore* blobs_;
  Offload offload_;
  const engine::Principal* principal_ = &engine::kAnonymous;
};

}  // namespace cloister::cloisterd
