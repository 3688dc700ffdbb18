// Service: one cloisterd process. Opens the data directory, rebuilds the views, runs the
// controller and registry listeners on one libuv loop, and shuts down gracefully on SIGTERM or
// SIGINT (stop accepting, answer every request in flight, snapshot, close the log).
//
// Threading: Run() runs the loop on the calling thread; docs/architecture.md ("Threading")
// draws the picture.
#pragma once

#include "api/cloisterd/options.h"

namespace cloister::cloisterd {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // Could not open the data directory, listen, ...
inline constexpr int kExitUsage = 2;    // Invalid configuration.

// Runs until a shutdown signal. Returns the process exit code. Startup failures print one line.
int RunService(const Options& options);

}  // namespace cloister::cloisterd
