// cloisterd: the cloister controller and registry.
//
//   cloisterd [--data DIR] [--role all|controller|registry] [options]   see --help
//
// Exit status: 0 after a graceful shutdown; 1 when the data directory or a listener cannot be
// opened; 2 for an invalid configuration (one line on stderr says what); 75 after a fatal I/O
// error on the log (restart to reopen the last durable state).
#include <cstdio>

#include "api/cloisterd/logging.h"
#include "api/cloisterd/options.h"
#include "api/cloisterd/service.h"

int main(int argc, char** argv) {
  using namespace cloister::cloisterd;
  ParseOutcome outcome = ParseOptions(argc, argv);
  if (!outcome.run) {
    std::fputs(outcome.text.c_str(), outcome.exit_code == 0 ? stdout : stderr);
    return outcome.exit_code;
  }
  const Options& options = outcome.options;
  SetUpLogging(options.log_format == "json" ? LogFormat::kJson : LogFormat::kText,
               options.log_level);
  return RunService(options);
}
