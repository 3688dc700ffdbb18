// VM policies on the controller (issue 7) through the real cloisterd and the real `policy` tool:
// a policy file made with the tool is recorded, read back, extended with the tool's next change,
// evaluated and attached; a tampered file, a rewritten chain and non-root callers are refused
// and change nothing; the node protocol carries the effective policy with the instance; saving
// the instance keeps the policy, and a pure copy needs an administrator's signed approval.
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "log/base64.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/tap_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

constexpr char kToken[] = "policy-wire-root-5521";

std::string Root() {
  return "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) + "\r\n";
}

// Runs the policy tool as user admin (password "admin-pw"); REQUIREs exit 0.
void Policy(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {RunfilePath("tools/policy")};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess tool(argv, {"ANKA_USER=admin", "ANKA_PASSWORD=admin-pw",
                           "ANKA_NEW_PASSWORD=bob-pw"});
  const int status = tool.Wait();
  INFO("policy " << args.at(0) << ": " << tool.out() << tool.err());
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

// A policy's attached_to as answered: sorted (the template ids are UUIDs).
Json Sorted(std::vector<std::string> items) {
  std::sort(items.begin(), items.end());
  return Json(items);
}

Json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return Json::parse(text.str());
}

Json Put(const WireTarget& api, const std::string& id, const Json& file,
         const std::string& auth = Root()) {
  return Envelope(Call(api, "POST", "/api/v1/policy", Json({{"id", id}, {"policy", file}}).dump(),
                       auth));
}

TEST_CASE("policies: record, extend, read, decide, attach; forgeries and rewrites refused") {
  TempDir dir;
  auto started = CloisterdProcess::Start(
      dir.Sub("data"), dir.path(), {"--access-log=false"},
      {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
       "ANKA_ENABLE_API_KEYS=true"});
  REQUIRE(started.ok());
  const WireTarget api = (*started)->controller();
  const std::string file = dir.Sub("policy.json");
  Policy({"create", file});
  Policy({"adduser", file, "bob"});
  Policy({"assign", file, "bob", "com.veertu.ankahv.fs=deny",
          "com.veertu.ankahv.fs./Users/test/workspace1=allow"});
  const Json v1 = ReadJson(file);

  // Recorded as root; read back as the same file.
  const Json put = Put(api, "secure-ci", v1);
  REQUIRE(put["status"] == "OK");
  const std::string head1 = put["body"]["head_hash"];
  CHECK(head1.size() == 64);
  Json got = RequireOk(Call(api, "GET", "/api/v1/policy?id=secure-ci", "", Root()));
  CHECK(got["policy"] == v1);
  CHECK(got["events"] == 3);
  CHECK(got["users"].size() == 2);

  // Decisions as the tool makes them.
  const std::string decide = "/api/v1/policy/decide?id=secure-ci&user=bob&rule=";
  Json d = RequireOk(Call(api, "GET", decide + "com.veertu.ankahv.fs./etc", "", Root()));
  CHECK(d["allow"] == false);
  CHECK(d["rule"] == "com.veertu.ankahv.fs");
  d = RequireOk(Call(api, "GET", decide + "com.veertu.ankahv.fs./Users/test/workspace1/src", "",
                     Root()));
  CHECK(d["allow"] == true);
  CHECK(RequireOk(Call(api, "GET", decide + "com.veertu.anka.cfg.ram", "", Root()))["allow"] ==
        false);

  // The tool's next change extends it: only the new event is recorded.
  Policy({"assign", file, "bob", "com.veertu.ankahv.usb.host=0"});
  const Json v2 = ReadJson(file);
  const Json put2 = Put(api, "secure-ci", v2);
  REQUIRE(put2["status"] == "OK");
  CHECK(put2["body"]["head_hash"] != head1);
  CHECK(RequireOk(Call(api, "GET", "/api/v1/policy?id=secure-ci", "", Root()))["events"] == 4);
  CHECK(Put(api, "secure-ci", v2)["status"] == "OK");  // Again: nothing new, nothing recorded.

  // Refused, changing nothing: an older version, a tampered event, another chain, non-root.
  const Json old = Put(api, "secure-ci", v1);
  CHECK(old["status"] == "FAIL");
  CHECK(old["message"].get<std::string>().find("does not extend the stored one") !=
        std::string::npos);
  Json tampered = v2;
  std::string event = *log::Base64Decode(tampered["events"][1].get<std::string>());
  event[event.size() / 2] ^= 0x01;
  tampered["events"][1] = log::Base64Encode(event);
  const Json bad = Put(api, "other", tampered);
  CHECK(bad["status"] == "FAIL");
  CHECK(bad["message"].get<std::string>().find("event 2") != std::string::npos);
  const std::string file2 = dir.Sub("other.json");
  Policy({"create", file2});
  const Json rewrite = Put(api, "secure-ci", ReadJson(file2));
  CHECK(rewrite["status"] == "FAIL");
  Pkey key = NewRsaKey();
  CreateApiKey(api, Root(), "ci", key.get());
  const std::string ci = Bearer(Login(api, "ci", key.get()));
  RequireFail(Call(api, "POST", "/api/v1/policy",
                   Json({{"id", "x"}, {"policy", v2}}).dump(), ci),
              403);
  RequireOk(Call(api, "GET", "/api/v1/policy?id=secure-ci", "", ci));  // Reading is open.
  const Json all = RequireOk(Call(api, "GET", "/api/v1/policy", "", Root()));
  REQUIRE(all.size() == 1);
  CHECK(all[0]["events"] == 4);
  CHECK(all[0]["head_hash"] == put2["body"]["head_hash"]);

  // Attached to a template: an instance from it carries the policy over the node protocol.
  const std::string tmpl = PushTemplate((*started)->registry(), "macos", "v1", Root());
  RequireOk(Call(api, "POST", "/api/v1/policy/attach",
                 R"({"policy_id":"secure-ci","template_id":")" + tmpl + R"("})", Root()));
  RequireFail(Call(api, "POST", "/api/v1/policy/attach",
                   R"({"policy_id":"secure-ci","template_id":")" + tmpl + R"("})", ci),
              403);
  const std::string node_id =
      RequireOk(Call(api, "POST", "/node/v1/join",
                     R"({"node_name":"mac-1","cpu_count":8,"ram_mb":16384,"max_vm_count":2})",
                     Root()))["node_id"];
  RequireOk(Call(api, "POST", "/node/v1/heartbeat",
                 R"({"node_id":")" + node_id + R"(","vm_count":0})", Root()));
  const Json ids = RequireOk(
      Call(api, "POST", "/api/v1/vm", R"({"vmid":")" + tmpl + R"("})", Root()));
  Json instances;
  REQUIRE(WaitFor(10000, [&] {
    instances = RequireOk(Call(api, "GET", "/node/v1/instances?node_id=" + node_id, "",
                               Root()))["instances"];
    return instances.size() == 1;
  }));
  CHECK(instances[0]["instance_id"] == ids[0]);
  CHECK(instances[0]["policy"]["id"] == "secure-ci");
  CHECK(instances[0]["policy"]["head_hash"] == put2["body"]["head_hash"]);
  CHECK(instances[0]["policy"]["file"] == v2);
  const Json seen = RequireOk(Call(api, "GET", "/api/v1/policy?id=secure-ci", "", Root()));
  CHECK(seen["attached_to"] == Json({"template/" + tmpl}));

  // Saving the instance (clone) keeps its policy: the new template has it attached.
  const std::string instance = ids[0];
  RequireOk(Call(api, "POST", "/node/v1/report",
                 R"({"node_id":")" + node_id + R"(","reports":[{"seq":1,"instance_id":")" +
                     instance + R"(","state":"Started"}]})",
                 Root()));
  // Each save names a new template "saved-<extra's length>"; the node pushes the image as its
  // tag v1 (the push makes the template) and reports the digest.
  auto saved_name = [](const std::string& extra) {
    return "saved-" + std::to_string(extra.size());
  };
  auto save = [&](const std::string& extra) {
    return Call(api, "POST", "/api/v1/image",
                R"({"id":")" + instance + R"(","new_template_name":")" + saved_name(extra) +
                    R"(","tag":"v1")" + extra + "}",
                Root());
  };
  auto finish = [&](const std::string& request, const std::string& extra) {
    const std::string digest = PushImage((*started)->registry(), saved_name(extra), "v1", Root());
    RequireOk(Call(api, "POST", "/node/v1/save_image",
                   R"({"node_id":")" + node_id + R"(","request_id":")" + request +
                       R"(","ok":true,"digest":")" + digest + R"("})",
                   Root()));
    const Json done = RequireOk(Call(api, "GET", "/api/v1/image?id=" + request, "", Root()));
    REQUIRE(done["status"] == "done");
    return done["vmid"].get<std::string>();
  };
  const std::string kept = finish(RequireOk(save("")).get<std::string>(), "");
  CHECK(RequireOk(Call(api, "GET", "/api/v1/policy?id=secure-ci", "", Root()))["attached_to"] ==
        Sorted({"template/" + kept, "template/" + tmpl}));
  // A pure copy needs a policy administrator's signed approval; root alone is refused.
  CHECK(RequireFail(save(R"(,"copy":true)"), 403).find("a copy without the policy needs") == 0);
  const std::string approval_file = dir.Sub("approval.yaml");
  {
    std::ofstream out(approval_file);
    out << "copy: " << instance << "\n";
  }
  Policy({"sign", file, approval_file});
  std::stringstream approval;
  approval << std::ifstream(approval_file).rdbuf();
  std::string forged = approval.str();
  forged.replace(forged.find("copy: ") + 6, 4, "0000");  // Another instance: the signature fails.
  CHECK(RequireFail(save(R"(,"copy":true,"approval":)" + Json(forged).dump()), 403)
            .find("a copy without the policy needs") == 0);
  const std::string approved_copy = R"(,"copy":true,"approval":)" + Json(approval.str()).dump();
  const std::string copy_request = RequireOk(save(approved_copy));
  CHECK(RequireOk(Call(api, "GET", "/api/v1/image?id=" + copy_request, "", Root()))["status"] ==
        "pending");
  const std::string copied = finish(copy_request, approved_copy);
  CHECK(copied != kept);
  CHECK(RequireOk(Call(api, "GET", "/api/v1/policy?id=secure-ci", "", Root()))["attached_to"] ==
        Sorted({"template/" + kept, "template/" + tmpl}));  // The copy keeps no policy.
  bool approved = false;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    const Json event = Json::parse(line);
    approved |= event["type"] == "SaveImageRequested" && event["payload"]["copy"] == true &&
                event["payload"]["copy_approved_by"] == "admin";
  }
  CHECK(approved);

  // Detached (root may detach): the instance's next answer has no policy, and is news.
  const uint64_t before =
      RequireOk(Call(api, "GET", "/node/v1/instances?node_id=" + node_id, "", Root()))["seq"];
  RequireOk(Call(api, "DELETE", "/api/v1/policy/attach",
                 R"({"template_id":")" + tmpl + R"("})", Root()));
  const Json after = RequireOk(Call(api, "GET", "/node/v1/instances?node_id=" + node_id, "",
                                    Root()));
  CHECK(after["seq"].get<uint64_t>() > before);
  CHECK_FALSE(after["instances"][0].contains("policy"));
  CHECK(RequireFail(Call(api, "DELETE", "/api/v1/policy/attach",
                         R"({"template_id":")" + tmpl + R"("})", Root()),
                    200)
            .find("no policy is attached") == 0);
  // Every recorded change is an event; no password appears in the log.
  int appended = 0;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    CHECK(line.find("admin-pw") == std::string::npos);
    CHECK(line.find("bob-pw") == std::string::npos);
    appended += Json::parse(line)["type"] == "PolicyEventsAppended";
  }
  CHECK(appended == 2);
}

}  // namespace
}  // namespace cloister::testing
