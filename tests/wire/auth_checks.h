// What the authentication wire tests (root token, TAP) share: a daemon started with the
// environment that turns authentication on, and the exact 401 (testonly).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {

// cloisterd with its data in dir/data and env added to its environment; REQUIREs that it
// starts. Stopped by the CloisterdProcess destructor.
std::unique_ptr<CloisterdProcess> StartDaemon(TempDir& dir, const std::vector<std::string>& env);

// CHECKs the exact 401 Anka answers a request without valid credentials.
void RequireUnauthenticated(const WireResponse& response);

}  // namespace cloister::testing
