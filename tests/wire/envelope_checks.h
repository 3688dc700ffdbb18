// One-shot requests to a cloister server and Catch2 checks of the Anka envelope (testonly).
#pragma once

#include <array>
#include <map>
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

// A one-layer OCI image pushed to registry (a cloisterd registry listener) the way clients
// push: its config blob and its layer blob each by POST /v2/<name>/blobs/uploads/ (202 +
// Location) and PUT <Location>?digest= (201), then its image manifest by
// PUT /v2/<name>/manifests/<tag> (201). headers ("Name: value\r\n" lines, e.g. Authorization)
// go on every request. The layer's bytes derive from name and tag, so every tag is a new
// manifest; a non-empty description becomes the manifest's
// org.opencontainers.image.description annotation. REQUIREs each answer; returns the manifest's
// digest.
std::string PushImage(const WireTarget& registry, const std::string& name, const std::string& tag,
                      const std::string& headers = "", const std::string& description = "");

// A template made as the registry makes them: PushImage of name:tag (the first push of a name
// creates the template, named name, with a fresh id; later ones add the tag to it), then the
// template's id from GET /registry/vm?id=<name> on the same listener, which must list tag
// among the versions. Returns the id.
std::string PushTemplate(const WireTarget& registry, const std::string& name,
                         const std::string& tag, const std::string& headers = "",
                         const std::string& description = "");

// A cloisterd started for one test (no access log) in its own temporary directory, with the
// templates named by (name, tag) pushed to its registry listener in order (PushTemplate);
// REQUIREs that it starts. Stopped by the CloisterdProcess destructor.
struct TestDaemon {
  explicit TestDaemon(const std::vector<std::array<std::string, 2>>& templates = {});

  // The id of the template pushed as name; REQUIREs that one was.
  const std::string& TemplateId(const std::string& name) const;

  TempDir dir;
  std::unique_ptr<CloisterdProcess> process;
  WireTarget api;
  WireTarget registry;
  std::map<std::string, std::string> template_ids;  // name -> id.
};

}  // namespace cloister::testing
