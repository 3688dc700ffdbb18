#include "tests/wire/envelope_checks.h"

#include <catch2/catch.hpp>
#include <sstream>

#include "tests/crash/child_process.h"

namespace cloister::testing {

WireResponse Call(const WireTarget& target, std::string_view method, std::string_view path,
                  std::string_view body, std::string_view headers) {
  auto connection = WireConnection::Connect(target);
  INFO(connection.status().ToString());
  REQUIRE(connection.ok());
  REQUIRE((*connection)->Send(MakeRequest(method, path, body, headers)).ok());
  auto response = (*connection)->ReadResponse(10000, method == "HEAD");
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  return std::move(*response);
}

nlohmann::json Envelope(const WireResponse& response) {
  INFO("status " << response.status << " body " << response.body);
  REQUIRE(response.Header("Content-Type").rfind("application/json", 0) == 0);
  nlohmann::json json = nlohmann::json::parse(response.body, nullptr, false);
  REQUIRE(json.is_object());
  REQUIRE(json.contains("status"));
  REQUIRE(json.contains("message"));
  REQUIRE(json["message"].is_string());
  return json;
}

nlohmann::json RequireOk(const WireResponse& response) {
  nlohmann::json json = Envelope(response);
  INFO(response.body);
  REQUIRE(response.status == 200);
  REQUIRE(json["status"] == "OK");
  REQUIRE(json.contains("body"));
  return json["body"];
}

std::string RequireFail(const WireResponse& response, int status) {
  nlohmann::json json = Envelope(response);
  INFO(response.body);
  REQUIRE(response.status == status);
  REQUIRE(json["status"] == "FAIL");
  REQUIRE(!json["message"].get<std::string>().empty());
  return json["message"];
}

std::vector<std::string> AuditExportLines(const std::string& data_dir) {
  ProgramResult result = RunProgram(RunfilePath("tools/cloister"),
                                    {"audit", "export", "--data", data_dir}, 60000);
  INFO(result.Describe());
  REQUIRE(result.Succeeded());
  std::vector<std::string> lines;
  std::istringstream in(result.out);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

TestDaemon::TestDaemon(const std::vector<std::array<std::string, 3>>& templates) {
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {"--access-log=false"});
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  process = std::move(*started);
  api = process->controller();
  for (const auto& [id, name, tag] : templates) {
    RegisterTemplate(api, id, name, tag);
  }
}

void RegisterTemplate(const WireTarget& target, const std::string& id, const std::string& name,
                      const std::string& tag, const std::string& headers) {
  const nlohmann::json body = {{"id", id}, {"name", name}, {"tag", tag}};
  RequireOk(Call(target, "POST", "/api/v1/admin/template", body.dump(), headers));
}

}  // namespace cloister::testing
