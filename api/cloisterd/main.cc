// cloisterd: the cloister controller and registry.
//
//   cloisterd [--data DIR] [--role all|controller|registry] [options]   see --help
//   cloisterd --init [--data DIR]     make a root token, print it once, keep its digest
//
// Exit status: 0 after a graceful shutdown; 1 when the data directory or a listener cannot be
// opened; 2 for an invalid configuration (one line on stderr says what); 75 after a fatal I/O
// error on the log (restart to reopen the last durable state).
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>

#include "api/cloisterd/auth.h"
#include "api/cloisterd/logging.h"
#include "api/cloisterd/options.h"
#include "api/cloisterd/service.h"
#include "client/controller_client.h"

int main(int argc, char** argv) {
  using namespace cloister::cloisterd;
  // Requests hold credentials in memory while they are handled (and the auth caches keep the
  // last good ones): no core dump may carry them to disk, and no same-user process may read
  // this one's memory through ptrace or /proc/PID/mem.
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0);
  cloister::client::InitHttpClients();  // Before any thread (the registry probe uses libcurl).
  // The registry commits blobs (fsync, rename) on libuv's thread pool: concurrent uploads
  // overlap their fsyncs, which the file system's journal groups. Four threads (libuv's
  // default) would cap that at four; an operator's own setting wins.
  setenv("UV_THREADPOOL_SIZE", "16", /*overwrite=*/0);
  ParseOutcome outcome = ParseOptions(argc, argv);
  if (!outcome.run) {
    std::fputs(outcome.text.c_str(), outcome.exit_code == 0 ? stdout : stderr);
    return outcome.exit_code;
  }
  const Options& options = outcome.options;
  if (options.init) {
    const std::string token = NewRootToken();
    cloister::Status written =
        token.empty() ? cloister::Status::IoError("no random bytes for a token")
                      : WriteRootTokenDigest(options.data_dir, DigestToken(token));
    if (!written.ok()) {
      std::fprintf(stderr, "cloisterd: --init: %s\n", written.message().c_str());
      return 2;
    }
    std::printf(
        "Root token (shown this once; only its SHA-256 is kept, in %s):\n\n    %s\n\n"
        "Start with ANKA_ENABLE_AUTH=true (and without ANKA_ROOT_TOKEN) to require it.\n",
        RootTokenDigestPath(options.data_dir).c_str(), token.c_str());
    return 0;
  }
  SetUpLogging(options.log_format == "json" ? LogFormat::kJson : LogFormat::kText,
               options.log_level);
  return RunService(options);
}
