// Small files replaced whole: a temporary file beside the target, written, fsynced, renamed over
// it, so a reader (or a restart after a crash) sees the old content or the new, never a mix.
#pragma once

#include <string>

#include "log/status.h"

namespace cloister::log {

// Replaces path's content with text; the file gets mode (when it is created). kIoError naming the
// path on failure (the temporary file may be left behind; the next write replaces it).
Status WriteFileAtomic(const std::string& path, const std::string& text, unsigned mode = 0600);

}  // namespace cloister::log
