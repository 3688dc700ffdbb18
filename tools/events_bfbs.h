// The binary FlatBuffers schema (reflection.fbs format) of log/events.fbs, compiled in by the
// //tools:events_bfbs_cc genrule from the same source file as log/events_generated.h.
#pragma once

#include <cstdint>
#include <span>

namespace cloister::tools {

// The bytes of events.bfbs; static storage, 16-byte aligned, valid for the life of the process.
std::span<const uint8_t> EventsBfbs();

}  // namespace cloister::tools
