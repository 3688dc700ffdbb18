#include "tests/wire/envelope_checks.h"

#include <catch2/catch.hpp>
#include <sstream>

#include "tests/crash/child_process.h"
#include "tests/wire/oci_checks.h"

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

namespace {

constexpr char kOctetStream[] = "Content-Type: application/octet-stream\r\n";

// One blob into name by POST (202 + Location), then PUT <Location>?digest= (201).
void PushBlob(const WireTarget& registry, const std::string& name, const std::string& bytes,
              const std::string& headers) {
  const std::string digest = Sha256Digest(bytes);
  const WireResponse started = Call(registry, "POST", "/v2/" + name + "/blobs/uploads/", "",
                                    headers);
  INFO("POST /v2/" << name << "/blobs/uploads/: " << started.status << " " << started.body);
  REQUIRE(started.status == 202);
  const std::string location = started.Header("Location");
  REQUIRE(location.rfind("/v2/" + name + "/blobs/uploads/", 0) == 0);
  const char separator = location.find('?') == std::string::npos ? '?' : '&';
  const WireResponse put = Call(registry, "PUT", location + separator + "digest=" + digest, bytes,
                                headers + kOctetStream);
  INFO("PUT " << location << ": " << put.status << " " << put.body);
  REQUIRE(put.status == 201);
  REQUIRE(put.Header("Docker-Content-Digest") == digest);
}

}  // namespace

std::string PushImage(const WireTarget& registry, const std::string& name, const std::string& tag,
                      const std::string& headers, const std::string& description) {
  const std::string config = R"({"architecture":"arm64","os":"darwin"})";
  const std::string layer = "disk bytes of " + name + ":" + tag;
  PushBlob(registry, name, config, headers);
  PushBlob(registry, name, layer, headers);
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                  {"digest", Sha256Digest(config)}, {"size", config.size()}}},
      {"layers", nlohmann::json::array({{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                         {"digest", Sha256Digest(layer)},
                                         {"size", layer.size()}}})}};
  if (!description.empty()) {
    manifest["annotations"] = {{"org.opencontainers.image.description", description}};
  }
  const std::string body = manifest.dump();
  const WireResponse put =
      Call(registry, "PUT", "/v2/" + name + "/manifests/" + tag, body,
           headers + "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n");
  INFO("PUT /v2/" << name << "/manifests/" << tag << ": " << put.status << " " << put.body);
  REQUIRE(put.status == 201);
  REQUIRE(put.Header("Docker-Content-Digest") == Sha256Digest(body));
  return put.Header("Docker-Content-Digest");
}

std::string PushTemplate(const WireTarget& registry, const std::string& name,
                         const std::string& tag, const std::string& headers,
                         const std::string& description) {
  PushImage(registry, name, tag, headers, description);
  const nlohmann::json shown =
      RequireOk(Call(registry, "GET", "/registry/vm?id=" + name, "", headers));
  REQUIRE(shown["name"] == name);
  REQUIRE(shown["id"].is_string());
  bool tagged = false;
  for (const nlohmann::json& version : shown["versions"]) {
    tagged = tagged || version["tag"] == tag;
  }
  REQUIRE(tagged);
  return shown["id"];
}

TestDaemon::TestDaemon(const std::vector<std::array<std::string, 2>>& templates) {
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {"--access-log=false"});
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  process = std::move(*started);
  api = process->controller();
  registry = process->registry();
  for (const auto& [name, tag] : templates) {
    template_ids[name] = PushTemplate(registry, name, tag);
  }
}

const std::string& TestDaemon::TemplateId(const std::string& name) const {
  auto it = template_ids.find(name);
  INFO("template " << name);
  REQUIRE(it != template_ids.end());
  return it->second;
}

}  // namespace cloister::testing
