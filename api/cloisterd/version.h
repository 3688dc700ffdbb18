// The version cloisterd reports in /api/v1/status, /registry/status and --version.
#pragma once

namespace cloister::cloisterd {

inline constexpr const char kVersion[] = "0.3.0-cloister";

}  // namespace cloister::cloisterd
