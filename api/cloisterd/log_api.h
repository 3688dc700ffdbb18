// LogApi: the registry's central log server (issue 8; docs/api.md "Registry"; the paths are
// cloister's own: Anka's are not public), on the registry listener, over registry::LogStore.
//
//   POST /log?service=<name>&host=<name>   send_log: the body's text rows are appended to
//                                          <host>/<service> and fdatasync'd before the 200
//                                          {"file","bytes"}; over kRowsBytesMax: 413
//   POST /log/event                        send_log_event: a JSON object or an array of them,
//                                          one eventLog line each with "server_time" added;
//                                          invalid JSON: 400 and nothing written
//   GET  /log/files[?host=][&service=]     get_streamer: [{"file","size"}]
//   GET  /log/streamer?file=<host>/<service>|eventLog
//                                          get_streamer: a self-contained HTML page showing the
//                                          file as it grows (it reads /log/stream)
//   GET  /log/stream?file=[&offset=N][&follow=1|0]
//                                          stream_log: the file from byte offset. follow=0: up
//                                          to its end now (Content-Length). follow=1 (the
//                                          default, HTTP/1.1 only): chunked, rows appended later
//                                          are sent as they arrive, until the client goes away,
//                                          kFollowIdleNs pass without a new byte, or
//                                          kFollowTotalNs in all
//   GET  /log/archive[?host=][&service=]   get_log_archive: a tar.gz of the matching files
//                                          (LogStore::List), built on the thread pool into an
//                                          unlinked temporary file, then sent from it
//
// Log rows are data, not changes of state: they never enter the event log (docs/registry.md).
// Answers other than the data itself use the Anka envelope.
//
// Threading: the event-loop thread; appends (fdatasync) and archives run on the offload pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/cloisterd/blob_io.h"
#include "api/http_types.h"
#include "engine/clock.h"
#include "registry/log_store.h"

namespace cloister::cloisterd {

class LogApi {
 public:
  using Respond = std::function<void(api::Response)>;

  // One POST /log body; more is 413.
  static constexpr size_t kRowsBytesMax = 1024 * 1024;
  // Objects in one POST /log/event.
  static constexpr size_t kEventsMax = 1000;
  // Followed streams open at once; more are 503.
  static constexpr size_t kFollowersMax = 256;
  // A followed stream ends after this long without a new byte, or this long in all.
  static constexpr int64_t kFollowIdleNs = 5LL * 60 * 1'000'000'000;
  static constexpr int64_t kFollowTotalNs = 60LL * 60 * 1'000'000'000;
  // Archives being built at once; more are 503.
  static constexpr size_t kArchivesMax = 4;

  // store and clock must outlive this. offload: as OciApi's (nullptr: run inline).
  LogApi(registry::LogStore* store, engine::Clock* clock, Offload offload);
  ~LogApi();

  // Answers /log and /log/... (the route table has admitted the request). False: not ours.
  bool Handle(const api::Request& request, Respond& respond);

  // Followed streams look for new bytes (Routes::Tick, every second; appends made here wake
  // them at once).
  void Tick();

 private:
  class Follower;

  void Append(const api::Request& request, Respond respond);
  void AppendEvents(const api::Request& request, Respond respond);
  void Files(const api::Request& request, Respond respond);
  void Streamer(const api::Request& request, Respond respond);
  void Stream(const api::Request& request, Respond respond);
  void Archive(const api::Request& request, Respond respond);
  // Runs work off the loop, then after on it.
  void Run(std::function<void()> work, std::function<void()> after);

  registry::LogStore* store_;
  engine::Clock* clock_;
  Offload offload_;
  std::vector<std::weak_ptr<Follower>> followers_;
  size_t archives_ = 0;
  // Cleared on destruction: work finishing after it must not touch this.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cloister::cloisterd
