// Rejection: the typed reasons a valid request is refused by the domain. A rejected command
// appends nothing. api/ maps each to the Anka envelope {"status":"FAIL","message":...}.
#pragma once

#include <cstdint>

namespace cloister::engine {

enum class Rejection : uint8_t {
  kNone = 0,
  kInvalidArgument,     // A field is missing, too long, of the wrong form or out of range.
  kUnknownConfigKey,
  kInvalidConfigValue,
  kNotFound,            // The entity the command names does not exist.
  kNameTaken,
  kInvalidFallback,     // A node group's fallback is missing, itself, or makes a cycle.
  kIllegalTransition,   // A VM state change the Anka state machine does not allow.
  kAlreadyTerminated,
  kForbidden,           // Authorization refused the principal.
  kOverloaded,          // The engine's command queue is full; retry later.
};

// "invalid_argument", "name_taken", ...: stable names used in scenario scripts and logs.
const char* RejectionName(Rejection rejection);

}  // namespace cloister::engine
