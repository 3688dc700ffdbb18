// Runs the engine scenario scripts in tests/scenarios/*.txt (format: tests/scenarios/README.md).
//
// Each script runs against a real Log in a temporary directory, a simulated clock and an RNG
// seeded from the script's name (printed on failure; the name alone reproduces a run). After the
// last line the runner rebuilds the views from the log and requires them to be byte-identical to
// the engine's live views: replay equals live state.
#include <catch2/catch.hpp>

#include <cstdio>
#include <dirent.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/queue_poster.h"
#include "log/log.h"
#include "reducers/rebuild.h"
#include "reducers/snapshot.h"
#include "reducers/view_json.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"

namespace cloister::engine {
namespace {

constexpr int64_t kStartNs = 1'790'000'000'000'000'000;

// Splits a line into words; "double quotes" group words and may be empty.
std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool quoted = false;
  bool any = false;
  for (char c : text) {
    if (c == '"') {
      quoted = !quoted;
      any = true;
    } else if (c == ' ' && !quoted) {
      if (any || !word.empty()) {
        words.push_back(word);
      }
      word.clear();
      any = false;
    } else {
      word += c;
    }
  }
  if (any || !word.empty()) {
    words.push_back(word);
  }
  return words;
}

uint64_t Fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : text) {
    hash = (hash ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  }
  return hash;
}

// A manifest digest for a script's push: "sha256:" and 64 hex digits derived from seed. The
// engine checks a digest's form only (the blobs are the registry's business), so no real
// content is hashed.
std::string ScriptDigest(const std::string& seed) {
  std::string digest = "sha256:";
  for (int part = 0; part < 4; part++) {
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx",
                  static_cast<unsigned long long>(Fnv1a(std::to_string(part) + ":" + seed)));
    digest += hex;
  }
  return digest;
}

class Script {
 public:
  Script(std::string name, const std::string& dir) : name_(std::move(name)), rng_(Fnv1a(name_)) {
    log::Options options;
    options.dir = dir;
    auto opened = log::Log::Open(options);
    REQUIRE(opened.ok());
    log_ = std::move(opened.value());
    EngineOptions engine_options;
    engine_options.log = log_.get();
    engine_options.clock = &clock_;
    engine_options.rng = &rng_;
    engine_options.poster = &poster_;
    auto engine = Engine::Open(engine_options);
    REQUIRE(engine.ok());
    engine_ = std::move(engine.value());
  }

  // Runs one line; returns an error message, or "" when the line did what it says.
  std::string RunLine(const std::string& line);
  std::string CheckReplay();

 private:
  std::string Substitute(const std::string& word) const;
  std::optional<Command> Parse(const std::vector<std::string>& words, std::string* error);
  std::string Expect(const std::vector<std::string>& expected, const Reply& reply,
                     uint64_t head_before);
  std::string CheckView(const std::vector<std::string>& words);

  std::string name_;
  SimClock clock_{kStartNs};
  SeededRng rng_;
  QueuePoster poster_;
  std::unique_ptr<log::Log> log_;
  std::unique_ptr<Engine> engine_;
  std::map<std::string, std::string> vars_;  // $NAME -> an id a command created.
};

std::string Script::Substitute(const std::string& word) const {
  std::string out;
  size_t i = 0;
  while (i < word.size()) {
    if (word[i] != '$') {
      out += word[i++];
      continue;
    }
    size_t end = i + 1;
    while (end < word.size() && (isalnum(static_cast<unsigned char>(word[end])) || word[end] == '_')) {
      ++end;
    }
    auto it = vars_.find(word.substr(i + 1, end - i - 1));
    out += it == vars_.end() ? word.substr(i, end - i) : it->second;
    i = end;
  }
  return out;
}

std::optional<Command> Script::Parse(const std::vector<std::string>& words, std::string* error) {
  std::map<std::string, std::string> args;
  std::vector<std::pair<std::string, std::string>> ordered;
  for (size_t i = 2; i < words.size(); ++i) {
    const size_t eq = words[i].find('=');
    if (eq == std::string::npos) {
      *error = "expected key=value, got " + words[i];
      return std::nullopt;
    }
    std::string key = words[i].substr(0, eq);
    std::string value = Substitute(words[i].substr(eq + 1));
    args[key] = value;
    ordered.emplace_back(key, value);
  }
  auto get = [&](const char* key) { return args.contains(key) ? args[key] : std::string(); };
  auto opt = [&](const char* key) {
    return args.contains(key) ? std::optional<std::string>(args[key]) : std::nullopt;
  };
  auto number = [&](const char* key, uint64_t fallback) {
    return args.contains(key) ? std::stoull(args[key]) : fallback;
  };
  const std::string verb = words[0] + " " + words[1];
  if (verb == "config set") return SetConfig{ordered};
  if (verb == "group create") return CreateNodeGroup{get("name"), get("description"), get("fallback")};
  if (verb == "group update") {
    return UpdateNodeGroup{get("id"), opt("name"), opt("description"), opt("fallback")};
  }
  if (verb == "group delete") return DeleteNodeGroup{get("id")};
  if (verb == "node join") {
    JoinNode join;
    join.node_id = get("id");
    join.node_name = get("name");
    join.ip_address = get("ip");
    join.capacity = static_cast<uint32_t>(number("capacity", 2));
    join.capacity_mode = get("capacity_mode");
    join.vcpu_count = static_cast<uint32_t>(number("vcpu", 0));
    join.vram_mb = number("vram", 0);
    join.drain_mode = get("drain") == "true";
    std::stringstream groups(get("groups"));
    for (std::string group; std::getline(groups, group, ',');) {
      join.groups.push_back(group);
    }
    return join;
  }
  if (verb == "node remove") return RemoveNode{get("id"), get("reason")};
  if (verb == "node status") {
    auto state = NodeStateFromName(get("state"));
    if (!state) {
      *error = "unknown node state " + get("state");
      return std::nullopt;
    }
    UpdateNodeStatus status;
    status.node_id = get("id");
    status.state = *state;
    status.vm_count = static_cast<uint32_t>(number("vm_count", 0));
    status.message = get("message");
    if (auto templates = opt("templates")) {
      status.templates.emplace();
      std::stringstream list(*templates);
      for (std::string id; std::getline(list, id, ',');) {
        status.templates->push_back(id);
      }
    }
    return status;
  }
  if (verb == "group add" || verb == "group remove") {
    ChangeGroupMembership change;
    change.member = verb == "group add";
    std::stringstream groups(get("groups"));
    for (std::string id; std::getline(groups, id, ',');) {
      change.group_ids.push_back(id);
    }
    std::stringstream nodes(get("nodes"));
    for (std::string id; std::getline(nodes, id, ',');) {
      change.node_ids.push_back(id);
    }
    return change;
  }
  if (verb == "vm schedule") {
    return ScheduleVms{static_cast<uint32_t>(number("max", 1000))};
  }
  if (verb == "vm request") {
    RequestVm request;
    request.vmid = get("vmid");
    request.tag = get("tag");
    request.name = get("name");
    request.group_id = get("group");
    request.node_id = get("node");
    request.count = static_cast<uint32_t>(number("count", 1));
    request.priority = static_cast<uint32_t>(number("priority", 1000));
    request.vcpu = static_cast<uint32_t>(number("vcpu", 0));
    request.vram_mb = number("vram", 0);
    return request;
  }
  if (verb == "vm state") {
    auto state = VmStateFromName(get("state"));
    if (!state) {
      *error = "unknown VM state " + get("state");
      return std::nullopt;
    }
    ChangeVmState change;
    change.instance_id = get("id");
    change.state = *state;
    change.node_id = get("node");
    change.message = get("message");
    change.report_seq = number("seq", 0);
    return change;
  }
  if (verb == "vm terminate") return TerminateVm{get("id"), get("reason")};
  if (verb == "vm update") return UpdateVm{get("id"), opt("name"), opt("external_id"), opt("metadata")};
  if (verb == "vm restart") return RestartVm{get("id")};
  if (verb == "node config") {
    ConfigureNode config;
    config.node_id = get("id");
    config.node_name = opt("name");
    config.capacity_mode = opt("capacity_mode");
    if (args.contains("capacity")) config.capacity = static_cast<uint32_t>(number("capacity", 0));
    if (args.contains("vcpu_override")) {
      config.vcpu_override = static_cast<uint32_t>(number("vcpu_override", 0));
    }
    if (args.contains("ram_override")) config.ram_override_mb = number("ram_override", 0);
    if (args.contains("drain")) config.drain_mode = get("drain") == "true";
    return config;
  }
  if (verb == "node update") return RequestNodeUpdate{get("reason")};
  if (verb == "template push") {
    // A registry push of an image manifest: repo (a template's name or id), tag, description;
    // digest= seeds the manifest's digest (default: repo:tag).
    PushManifest push;
    push.repository = get("repo");
    push.tag = get("tag");
    push.description = get("description");
    push.digest = ScriptDigest(args.contains("digest") ? get("digest")
                                                       : push.repository + ":" + push.tag);
    push.media_type = "application/vnd.oci.image.manifest.v1+json";
    push.size = 512;
    return push;
  }
  if (verb == "image save") {
    RequestSaveImage save;
    save.instance_id = get("id");
    save.tag = get("tag");
    save.target_vm_id = get("target");
    save.new_template_name = get("new_name");
    save.description = get("description");
    return save;
  }
  if (verb == "image finish") {
    // digest= seeds the digest of the manifest the node reports it pushed, as `template push`'s
    // does (absent: the node reports none).
    return FinishSaveImage{get("id"), get("node"), get("ok") == "true", get("message"),
                           args.contains("digest") ? ScriptDigest(get("digest")) : ""};
  }
  *error = "unknown command " + verb;
  return std::nullopt;
}

// expected: ["ok", Type...] or ["rejected", name], optionally followed by "as" NAME...
std::string Script::Expect(const std::vector<std::string>& expected, const Reply& reply,
                           uint64_t head_before) {
  std::vector<std::string> want(expected.begin(), expected.end());
  std::vector<std::string> bind;
  auto as = std::find(want.begin(), want.end(), "as");
  if (as != want.end()) {
    bind.assign(as + 1, want.end());
    want.erase(as, want.end());
  }
  if (want.empty()) {
    return "nothing expected after ->";
  }
  if (!reply.status.ok()) {
    return "storage failed: " + reply.status.ToString();
  }
  if (want[0] == "rejected") {
    if (reply.rejection == Rejection::kNone) {
      return "expected rejection " + (want.size() > 1 ? want[1] : "") + ", got ok";
    }
    if (want.size() > 1 && want[1] != RejectionName(reply.rejection)) {
      return "expected rejection " + want[1] + ", got " + RejectionName(reply.rejection) + " (" +
             reply.message + ")";
    }
    if (log_->head().seq != head_before) {
      return "a rejected command appended events";
    }
    return "";
  }
  if (want[0] != "ok") {
    return "expected ok or rejected, got " + want[0];
  }
  if (reply.rejection != Rejection::kNone) {
    return std::string("expected ok, got rejection ") + RejectionName(reply.rejection) + " (" +
           reply.message + ")";
  }
  std::vector<std::string> got;
  Status status = log_->Scan(head_before + 1, UINT64_MAX, [&](const log::EventView& view) {
    got.push_back(fb::EnumNamePayload(view.event->payload_type()));
    return true;
  });
  REQUIRE(status.ok());
  std::vector<std::string> want_types(want.begin() + 1, want.end());
  if (got != want_types) {
    std::string text;
    for (const std::string& type : got) text += " " + type;
    return "expected events differ; got:" + (text.empty() ? std::string(" none") : text);
  }
  if (bind.size() > reply.ids.size()) {
    return "the command created " + std::to_string(reply.ids.size()) + " ids, not " +
           std::to_string(bind.size());
  }
  for (size_t i = 0; i < bind.size(); ++i) {
    vars_[bind[i]] = reply.ids[i];
  }
  return "";
}

// view /json/pointer == value   (value is compared with the JSON value's text form)
std::string Script::CheckView(const std::vector<std::string>& words) {
  if (words.size() != 4 || words[2] != "==") {
    return "expected: view /pointer == value";
  }
  const reducers::Json views = reducers::ViewsJson(engine_->views());
  const reducers::Json::json_pointer pointer(Substitute(words[1]));
  const std::string want = Substitute(words[3]);
  if (want == "absent") {
    return views.contains(pointer) ? "expected " + words[1] + " to be absent" : "";
  }
  if (!views.contains(pointer)) {
    return words[1] + " is absent";
  }
  const reducers::Json& value = views.at(pointer);
  const std::string got = value.is_string() ? value.get<std::string>() : value.dump();
  return got == want ? "" : words[1] + " is " + got + ", expected " + want;
}

std::string Script::RunLine(const std::string& raw) {
  const std::string line = raw.substr(0, raw.find('#'));
  std::vector<std::string> words = Words(line);
  if (words.empty()) {
    return "";
  }
  if (words[0] == "tick" && words.size() == 2) {
    clock_.Advance(std::stoll(words[1]) * 1'000'000'000);
    return "";
  }
  if (words[0] == "view") {
    return CheckView(words);
  }
  auto arrow = std::find(words.begin(), words.end(), "->");
  if (arrow == words.end() || arrow - words.begin() < 2) {
    return "expected: <noun> <verb> key=value... -> expectation";
  }
  std::string error;
  std::optional<Command> command =
      Parse(std::vector<std::string>(words.begin(), arrow), &error);
  if (!command) {
    return error;
  }
  const uint64_t head_before = log_->head().seq;
  std::optional<Reply> reply;
  engine_->Submit(Principal::System(), std::move(*command), "scenario",
                  [&](Reply r) { reply = std::move(r); });
  if (!poster_.RunUntil([&] { return reply.has_value(); }, std::chrono::seconds(20))) {
    return "no reply within 20 s";
  }
  return Expect(std::vector<std::string>(arrow + 1, words.end()), *reply, head_before);
}

std::string Script::CheckReplay() {
  reducers::RebuildStats stats;
  auto replayed = reducers::Rebuild(*log_, nullptr, UINT64_MAX, &stats);
  if (!replayed.ok()) {
    return "replay failed: " + replayed.status().ToString();
  }
  if (reducers::EncodeViews(replayed.value()) != reducers::EncodeViews(engine_->views())) {
    return "views rebuilt from the log differ from the live views";
  }
  return "";
}

std::vector<std::string> ScriptPaths() {
  const std::string dir = testing::RunfilePath("tests/scenarios");
  std::vector<std::string> paths;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name.size() > 4 && name.ends_with(".txt")) {
      paths.push_back(dir + "/" + name);
    }
  }
  closedir(d);
  std::sort(paths.begin(), paths.end());
  return paths;
}

TEST_CASE("engine scenario scripts") {
  const std::vector<std::string> paths = ScriptPaths();
  REQUIRE(paths.size() >= 3);
  for (const std::string& path : paths) {
    const std::string name = path.substr(path.rfind('/') + 1);
    testing::TempDir dir;
    Script script(name, dir.path());
    std::ifstream in(path);
    std::string line;
    int number = 0;
    int commands = 0;
    while (std::getline(in, line)) {
      ++number;
      const std::string error = script.RunLine(line);
      INFO(name << ":" << number << ": " << line << "\n  seed: " << Fnv1a(name));
      CHECK(error == "");
      commands += line.find("->") != std::string::npos;
    }
    INFO(name);
    CHECK(commands > 0);
    CHECK(script.CheckReplay() == "");
  }
}

}  // namespace
}  // namespace cloister::engine
