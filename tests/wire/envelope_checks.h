// One-shot requests to a cloister server and Catch2 checks of the Anka envelope (testonly).
#pragma once

#include <array>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {

// One request on a fresh connection; REQUIREs a complete response within 10 s.
WireResponse Call(const WireTarget& target, std::string_view method, std::string_view path,
                  std::string_view body = "", std::string_view headers = "");

// The envelope of a JSON response, checked for shape: status and a string message.
nlohmann::json Envelope(const WireResponse& response);

// 200 + "OK"; returns the body.
nlohmann::json RequireOk(const WireResponse& response);

// status + "FAIL" with a non-empty message; returns the message.
std::string RequireFail(const WireResponse& response, int status);

// The events of the log in data_dir as JSON lines, from the real audit tool (`cloister audit
// export`, read-only: the daemon may be running). REQUIREs that the tool succeeds.
std::vector<std::string> AuditExportLines(const std::string& data_dir);

// A cloisterd started for one test (no access log) in its own temporary directory, with the
// templates named by (id, name, tag) registered; REQUIREs that it starts. Stopped by the
// CloisterdProcess destructor.
struct TestDaemon {
  explicit TestDaemon(const std::vector<std::array<std::string, 3>>& templates = {});

  TempDir dir;
  std::unique_ptr<CloisterdProcess> process;
  WireTarget api;
};

// Registers template id (named name) with tag through the admin endpoint; REQUIREs OK.
void RegisterTemplate(const WireTarget& target, const std::string& id, const std::string& name,
                      const std::string& tag, const std::string& headers = "");

}  // namespace cloister::testing
