// The demo story behind `cloister demo`: a short, realistic sequence of events appended the way
// real producers append them (one Append per command, DraftBuilder-encoded, with actors and
// request ids), so that a newcomer has a log to export and verify.
//
// The first twelve events are the story: root turns on API keys, creates a node group; a node
// joins it; root creates an API key for CI; the CI runner gets a TAP challenge and opens a
// session, requests a VM, which is scheduled and started; then someone fails to authenticate and
// a developer is denied a deletion. Past twelve, VM lifecycles with node heartbeats repeat.
#pragma once

#include <cstdint>

#include "log/log.h"
#include "log/status.h"

namespace cloister::tools {

inline constexpr uint64_t kDemoEventsDefault = 12;
inline constexpr uint64_t kDemoEventsMax = 10'000'000;

struct DemoResult {
  uint64_t events = 0;     // Events appended.
  uint64_t seq_first = 0;  // Seq of the first appended event (0 if none).
  uint64_t seq_last = 0;   // Seq of the last appended event (0 if none).
};

// Appends `events` (at most kDemoEventsMax) events to a log opened for writing. Event times
// start at time_ns_start and advance a few milliseconds per event. Returns once every append
// is durable. Errors: kInvalidArgument (events out of range), or the first failed append's status
// (events of commands before it may already be appended).
Result<DemoResult> AppendDemoStory(log::Log* log, uint64_t events, int64_t time_ns_start);

}  // namespace cloister::tools
