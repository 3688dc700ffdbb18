// Tests of the real `policy` binary (seed 000, issue 7), run as a subprocess: every command, every
// error path (exit 2, one "policy: ..." line), the current user's and the passwords' precedence,
// the terminal prompt (through a pty: no echo, a mismatch on a new password), tampering with the
// policy and with a signed yaml, decide's and validate's exit codes, and atomic writes (no
// temporary file survives a success, a refusal or a write that fails half-way).
//
// A non-pty run starts the binary in a new session (setsid) with stdin from /dev/null, so it has
// no terminal whatever terminal runs the tests. Each password check costs an Argon2id (~0.1 s), so
// each case makes only the policy it needs.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/testutil.h"

extern char** environ;

namespace cloister::tools {
namespace {

using cloister::testing::TempDir;
using Env = std::map<std::string, std::string>;

// ---- Running the binary ------------------------------------------------------------------------

struct Run {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string PolicyPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  REQUIRE(srcdir != nullptr);
  return std::string(srcdir) + "/cloister/tools/policy";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

// The test's environment without ANKA_*, plus env.
std::vector<std::string> ChildEnvironment(const Env& env) {
  std::vector<std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "ANKA_", 5) != 0) vars.emplace_back(*e);
  }
  for (const auto& [name, value] : env) vars.push_back(name + "=" + value);
  return vars;
}

struct Argv {
  explicit Argv(const std::vector<std::string>& args, const Env& env)
      : binary(PolicyPath()), strings(args), vars(ChildEnvironment(env)) {
    argv.push_back(binary.data());
    for (std::string& arg : strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    for (std::string& var : vars) envp.push_back(var.data());
    envp.push_back(nullptr);
  }
  std::string binary;
  std::vector<std::string> strings;
  std::vector<std::string> vars;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

// Starts policy args with env, no terminal, output to files in capture; returns its pid.
// fsize_limit: RLIMIT_FSIZE in bytes, so that writing a bigger file fails half-way.
pid_t Start(const TempDir& capture, int n, const std::vector<std::string>& args, const Env& env,
            std::optional<rlim_t> fsize_limit = std::nullopt) {
  Argv a(args, env);
  const std::string out_path = capture.Sub("out" + std::to_string(n));
  const std::string err_path = capture.Sub("err" + std::to_string(n));
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setsid();
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
        dup2(err, 2) < 0) {
      _exit(127);
    }
    if (fsize_limit.has_value()) {
      signal(SIGXFSZ, SIG_IGN);  // write() fails with EFBIG instead.
      const struct rlimit limit = {*fsize_limit, *fsize_limit};
      setrlimit(RLIMIT_FSIZE, &limit);
    }
    execve(a.binary.c_str(), a.argv.data(), a.envp.data());
    _exit(127);
  }
  return pid;
}

Run Finish(const TempDir& capture, int n, pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  Run r;
  r.exit_code = WEXITSTATUS(status);
  r.out = ReadFile(capture.Sub("out" + std::to_string(n)));
  r.err = ReadFile(capture.Sub("err" + std::to_string(n)));
  return r;
}

Run Policy(const std::vector<std::string>& args, const Env& env = {},
           std::optional<rlim_t> fsize_limit = std::nullopt) {
  static int counter = 0;
  TempDir capture;
  const int n = counter++;
  return Finish(capture, n, Start(capture, n, args, env, fsize_limit));
}

// The current user and password as the environment gives them.
Env As(const std::string& user, const std::string& password) {
  return {{"ANKA_USER", user}, {"ANKA_PASSWORD", password}};
}

#define CHECK_OK(run)                                          \
  do {                                                         \
    const Run& r_ = (run);                                     \
    INFO("stdout: " << r_.out << "\nstderr: " << r_.err);      \
    CHECK(r_.exit_code == 0);                                  \
  } while (false)

// Fails unless r is an error: exit 2 (or code), nothing on stdout, and a "policy: " line on stderr
// (after any warning) that holds part.
void CheckError(const Run& r, const std::string& part, int code = 2) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == code);
  CHECK(r.out.empty());
  const std::vector<std::string> lines = Lines(r.err);
  REQUIRE(!lines.empty());
  for (const std::string& line : lines) CHECK_THAT(line, Catch::StartsWith("policy: "));
  CHECK_THAT(lines.back(), Catch::Contains(part));
  CHECK_THAT(lines.back(), !Catch::Contains("warning"));
}

// Every file in dir, sorted.
std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A directory with policy.json whose only administrator is alice (password "alice-pw").
struct Fixture {
  TempDir tmp;
  std::string dir = tmp.Sub("vm");
  std::string file = dir + "/policy.json";

  Fixture() {
    REQUIRE(mkdir(dir.c_str(), 0755) == 0);
    CHECK_OK(Policy({"create", file}, As("alice", "alice-pw")));
  }

  Run Alice(std::vector<std::string> args, Env extra = {}) const {
    Env env = As("alice", "alice-pw");
    for (const auto& [name, value] : extra) env[name] = value;
    return Policy(args, env);
  }
};

// Copied from the seed on purpose, not shared with the tool: the test holds the tool to it.
const char kSeedUsage[] =
    "usage: policy [options] <command>\n"
    "\n"
    "   Manipulate Anka policy (create, add, assign, sign, ...)\n"
    "\n"
    "  -l,--login <val>   Username to access policy file\n"
    "  --version          Print version information and quit\n"
    "  --help             Show usage for particular command and exit\n"
    "\n"
    "  create             Create new policy file with initial admin user\n"
    "  adduser            Add new user to policy\n"
    "  addgroup           Add new group to policy\n"
    "  delete             Delete user or group from policy\n"
    "  join               Add user/group to certain group\n"
    "  leave              Remove user from group(s)\n"
    "  users              List the policy users\n"
    "  groups             List the policy groups\n"
    "  assign             Assign rule(s) to certain user or group\n"
    "  retract            Retract rule(s) from certain user or group\n"
    "  rules              List rules applied to the user or group\n"
    "  decide             Evaluate the rule for the user returning corresponding status\n"
    "  sign               Sign input (yaml) file\n"
    "  validate           Validate integrity of (yaml) file\n";

const char* const kCommandNames[] = {"create", "adduser", "addgroup", "delete",  "join",
                                     "leave",  "users",   "groups",   "assign",  "retract",
                                     "rules",  "decide",  "sign",     "validate"};

// ---- Usage --------------------------------------------------------------------------------------

TEST_CASE("--help prints the seed's usage text; no arguments prints it as an error") {
  const Run help = Policy({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out == kSeedUsage);
  CHECK(help.err.empty());
  const Run none = Policy({});
  CHECK(none.exit_code == 2);
  CHECK(none.out.empty());
  CHECK(none.err == kSeedUsage);
  const Run version = Policy({"--version"});
  CHECK(version.exit_code == 0);
  CHECK_THAT(version.out, Catch::StartsWith("policy "));
}

TEST_CASE("every command has its own --help, after or before the command") {
  for (const char* name : kCommandNames) {
    INFO(name);
    const Run after = Policy({name, "--help"});
    CHECK(after.exit_code == 0);
    CHECK_THAT(after.out, Catch::StartsWith(std::string("usage: policy [options] ") + name + " "));
    CHECK(after.err.empty());
    const Run before = Policy({"--help", name});
    CHECK(before.out == after.out);
  }
  CHECK_THAT(Policy({"adduser", "--help"}).out, Catch::Contains("--admin"));
}

TEST_CASE("bad arguments are usage errors: exit 2, one line") {
  CheckError(Policy({"frobnicate", "x"}), "unknown command 'frobnicate'");
  CheckError(Policy({"create"}), "create: expected FILE");
  CheckError(Policy({"create", "a", "b"}), "create: too many arguments");
  CheckError(Policy({"decide", "p.json"}), "decide: expected FILE RULENAME");
  CheckError(Policy({"assign", "p.json", "bob"}), "assign: expected");
  CheckError(Policy({"retract", "p.json", "bob"}), "retract: expected");
  CheckError(Policy({"users", "--bogus", "p.json"}), "unknown option --bogus");
  CheckError(Policy({"addgroup", "p.json", "g", "--admin"}), "unknown option --admin");
  CheckError(Policy({"users", "p.json", "--login"}), "--login needs a user name");
  CheckError(Policy({"-l"}), "-l needs a user name");
}

// ---- create, users, groups, and who the current user is ------------------------------------

TEST_CASE("create makes a policy whose only user is its administrator") {
  Fixture f;
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
  const Run users = Policy({"users", f.file});  // No password needed: none given.
  CHECK_OK(users);
  CHECK(users.out == "alice  admin  administrators\n");
  CHECK(users.err.empty());
  const Run groups = Policy({"groups", f.file});
  CHECK_OK(groups);
  CHECK(groups.out == "administrators  -\nstandard        -\n");
  struct stat st;
  REQUIRE(stat(f.file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0022) == 0);  // Nobody else may write it.
}

TEST_CASE("create refuses an existing file and a missing directory, and writes nothing") {
  Fixture f;
  const std::string before = ReadFile(f.file);
  CheckError(f.Alice({"create", f.file}), "already exists");
  CHECK(ReadFile(f.file) == before);
  const std::string other = f.dir + "/other.json";
  WriteFile(other, "not mine\n");
  CheckError(f.Alice({"create", other}), "already exists");
  CHECK(ReadFile(other) == "not mine\n");
  CheckError(f.Alice({"create", f.tmp.Sub("missing/policy.json")}), "missing");
  CHECK(Listing(f.dir) == (std::vector<std::string>{"other.json", "policy.json"}));
}

TEST_CASE("the current user: --login, then ANKA_USER, then the OS user") {
  TempDir tmp;
  const struct passwd* pw = getpwuid(geteuid());
  REQUIRE(pw != nullptr);
  const std::string os_user = pw->pw_name;
  const Env env = {{"ANKA_USER", "bob"}, {"ANKA_PASSWORD", "pw"}};
  CHECK_OK(Policy({"--login", "carol", "create", tmp.Sub("a.json")}, env));
  CHECK_OK(Policy({"-l", "dave", "create", tmp.Sub("b.json")}, env));
  CHECK_OK(Policy({"create", tmp.Sub("c.json")}, env));
  CHECK_OK(Policy({"create", tmp.Sub("d.json")}, {{"ANKA_PASSWORD", "pw"}}));
  CHECK_OK(Policy({"create", "--login=erin", tmp.Sub("e.json")}, {{"ANKA_PASSWORD", "pw"}}));
  CHECK(Policy({"users", tmp.Sub("a.json")}).out == "carol  admin  administrators\n");
  CHECK(Policy({"users", tmp.Sub("b.json")}).out == "dave  admin  administrators\n");
  CHECK(Policy({"users", tmp.Sub("c.json")}).out == "bob  admin  administrators\n");
  CHECK(Policy({"users", tmp.Sub("d.json")}).out == os_user + "  admin  administrators\n");
  CHECK(Policy({"users", tmp.Sub("e.json")}).out == "erin  admin  administrators\n");
  // The same order when changing a policy: --login beats ANKA_USER.
  CheckError(Policy({"--login", "zed", "addgroup", tmp.Sub("c.json"), "g"}, env),
             "unknown user zed");
  CHECK_OK(Policy({"--login", "bob", "addgroup", tmp.Sub("c.json"), "g"},
                  {{"ANKA_USER", "zed"}, {"ANKA_PASSWORD", "pw"}}));
}

// ---- Passwords ----------------------------------------------------------------------------------

TEST_CASE("a wrong password changes nothing and says so without showing it") {
  Fixture f;
  const std::string before = ReadFile(f.file);
  const Run r = Policy({"addgroup", f.file, "devs"}, As("alice", "not-alices"));
  CheckError(r, "wrong password for alice");
  CHECK_THAT(r.err, !Catch::Contains("not-alices"));
  CHECK(ReadFile(f.file) == before);
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
  // No ANKA_PASSWORD and no terminal: the empty password, which is not alice's.
  const Run empty = Policy({"addgroup", f.file, "devs"}, {{"ANKA_USER", "alice"}});
  CheckError(empty, "wrong password for alice");
  CHECK_THAT(empty.err, Catch::Contains("empty password") && Catch::Contains("insecure"));
}

TEST_CASE("an empty password is valid but insecure, and said so") {
  TempDir tmp;
  const std::string file = tmp.Sub("p.json");
  const Run create = Policy({"create", file}, {{"ANKA_USER", "alice"}});
  CHECK(create.exit_code == 0);
  CHECK_THAT(create.err, Catch::Contains("policy: warning: no ANKA_PASSWORD and no terminal"));
  CHECK_THAT(create.err, Catch::Contains("insecure"));
  const Run explicit_empty = Policy({"addgroup", file, "devs"}, As("alice", ""));
  CHECK(explicit_empty.exit_code == 0);
  CHECK_THAT(explicit_empty.err, Catch::Contains("empty password for alice (insecure)"));
  CHECK_OK(Policy({"addgroup", file, "qa"}, {{"ANKA_USER", "alice"}}));
  CheckError(Policy({"addgroup", file, "ops"}, As("alice", "something")), "wrong password");
}

// ---- adduser, addgroup, delete, join, leave --------------------------------------------------

TEST_CASE("adduser: ANKA_NEW_PASSWORD is the new user's; --admin makes an administrator") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  CHECK_OK(f.Alice({"adduser", f.file, "carol", "--admin"}, {{"ANKA_NEW_PASSWORD", "carol-pw"}}));
  CHECK(Policy({"users", f.file}).out ==
        "alice  admin  administrators\n"
        "bob    user   -\n"
        "carol  admin  administrators\n");
  // carol's password is the one given, and carol may change the policy.
  CheckError(Policy({"addgroup", f.file, "devs"}, As("carol", "alice-pw")), "wrong password");
  CHECK_OK(Policy({"addgroup", f.file, "devs"}, As("carol", "carol-pw")));
  // No ANKA_NEW_PASSWORD and no terminal: an empty password, with a warning.
  const Run dave = f.Alice({"adduser", f.file, "dave"});
  CHECK(dave.exit_code == 0);
  CHECK_THAT(dave.err, Catch::Contains("no ANKA_NEW_PASSWORD") && Catch::Contains("dave"));
  CheckError(f.Alice({"adduser", f.file, "bob"}), "user bob exists");
  CheckError(f.Alice({"adduser", f.file, "devs"}), "devs is a group");
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
}

TEST_CASE("only an administrator with its password changes a policy") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  const std::string before = ReadFile(f.file);
  CheckError(Policy({"addgroup", f.file, "devs"}, As("bob", "bob-pw")),
             "bob is not an administrator");
  CheckError(Policy({"assign", f.file, "bob", "com.veertu.ankahv.start=1"}, As("bob", "bob-pw")),
             "bob is not an administrator");
  CheckError(Policy({"delete", f.file, "alice"}, As("zed", "x")), "unknown user zed");
  CHECK(ReadFile(f.file) == before);
}

TEST_CASE("groups in groups; join, leave and delete") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  CHECK_OK(f.Alice({"addgroup", f.file, "devs"}));
  CHECK_OK(f.Alice({"addgroup", f.file, "qa"}));
  CHECK_OK(f.Alice({"addgroup", f.file, "staff"}));
  CheckError(f.Alice({"addgroup", f.file, "devs"}), "group devs exists");
  CheckError(f.Alice({"addgroup", f.file, "bob"}), "bob is a user");
  const Run joined = f.Alice({"join", f.file, "bob", "devs"});
  CHECK_OK(joined);
  CHECK(joined.out == "bob joined devs\n");
  CHECK_OK(f.Alice({"join", f.file, "bob", "qa"}));
  CHECK_OK(f.Alice({"join", f.file, "devs", "staff"}));
  CHECK(Policy({"users", f.file}).out ==
        "alice  admin  administrators\n"
        "bob    user   devs, qa\n");
  CHECK(Policy({"groups", f.file}).out ==
        "administrators  -\n"
        "devs            staff\n"
        "qa              -\n"
        "staff           -\n"
        "standard        -\n");
  CheckError(f.Alice({"join", f.file, "bob", "nowhere"}), "no group named nowhere");
  CheckError(f.Alice({"join", f.file, "nobody", "devs"}), "no user or group named nobody");
  CheckError(f.Alice({"join", f.file, "staff", "devs"}), "");  // A cycle: the library's words.

  CHECK_OK(f.Alice({"leave", f.file, "bob", "qa"}));
  CHECK(Lines(Policy({"users", f.file}).out).at(1) == "bob    user   devs");
  CHECK_OK(f.Alice({"join", f.file, "bob", "qa"}));
  const Run all = f.Alice({"leave", f.file, "bob"});
  CHECK_OK(all);
  CHECK(all.out == "bob left every group\n");
  CHECK(Lines(Policy({"users", f.file}).out).at(1) == "bob    user   -");
  CheckError(f.Alice({"leave", f.file, "nobody"}), "no user or group named nobody");

  CHECK_OK(f.Alice({"delete", f.file, "staff"}));
  CHECK_OK(f.Alice({"delete", f.file, "bob"}));
  CHECK(Policy({"users", f.file}).out == "alice  admin  administrators\n");
  CHECK(Policy({"groups", f.file}).out ==
        "administrators  -\n"
        "devs            -\n"
        "qa              -\n"
        "standard        -\n");
  CheckError(f.Alice({"delete", f.file, "bob"}), "no user or group named bob");
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
}

TEST_CASE("the last administrator can neither go nor leave; a second one can join") {
  Fixture f;
  CheckError(f.Alice({"delete", f.file, "alice"}), "administrator");
  CheckError(f.Alice({"leave", f.file, "alice"}), "administrator");
  CheckError(f.Alice({"leave", f.file, "alice", "administrators"}), "administrator");
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  // Joining administrators needs bob's own password, to seal his new key.
  CheckError(f.Alice({"join", f.file, "bob", "administrators"},
                     {{"ANKA_NEW_PASSWORD", "not-bobs"}}),
             "");
  CHECK_OK(f.Alice({"join", f.file, "bob", "administrators"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  CHECK_OK(Policy({"addgroup", f.file, "devs"}, As("bob", "bob-pw")));
  CHECK_OK(Policy({"delete", f.file, "alice"}, As("bob", "bob-pw")));
  CHECK(Policy({"users", f.file}).out == "bob  admin  administrators\n");
  CheckError(Policy({"delete", f.file, "bob"}, As("bob", "bob-pw")), "administrator");
}

// ---- assign, retract, rules, decide ------------------------------------------------------------

TEST_CASE("assign, retract and rules, with where each rule comes from") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  CHECK_OK(f.Alice({"addgroup", f.file, "devs"}));
  CHECK_OK(f.Alice({"addgroup", f.file, "staff"}));
  CHECK_OK(f.Alice({"join", f.file, "bob", "devs"}));
  CHECK_OK(f.Alice({"join", f.file, "devs", "staff"}));
  const Run assigned = f.Alice({"assign", f.file, "staff", "com.veertu.ankahv.fs=deny",
                                "com.veertu.ankahv.usb.host=0"});
  CHECK_OK(assigned);
  CHECK(assigned.out == "assigned 2 rule(s) to staff\n");
  CHECK_OK(f.Alice({"assign", f.file, "bob", "com.veertu.ankahv.fs./Users/bob=ALLOW"}));
  CHECK_OK(f.Alice({"assign", f.file, "devs", "com.veertu.ankahv.usb.host=yes"}));

  const Run bob = Policy({"rules", f.file}, {{"ANKA_USER", "bob"}});  // No password.
  CHECK_OK(bob);
  CHECK(bob.err.empty());
  CHECK(bob.out ==
        "com.veertu.ankahv.fs=deny              from group staff\n"
        "com.veertu.ankahv.fs./Users/bob=allow  from user bob\n"
        "com.veertu.ankahv.usb.host=allow       from group devs\n");
  CHECK(Policy({"--login", "bob", "rules", f.file}).out == bob.out);
  CHECK(Policy({"rules", f.file, "bob"}, {{"ANKA_USER", "alice"}}).out == bob.out);
  CHECK(Policy({"rules", f.file, "devs"}).out ==
        "com.veertu.ankahv.fs=deny         from group staff\n"
        "com.veertu.ankahv.usb.host=allow  from group devs\n");
  CHECK(Policy({"rules", f.file}, {{"ANKA_USER", "alice"}}).out.empty());
  CheckError(Policy({"rules", f.file, "nobody"}), "no user or group named nobody");
  CheckError(Policy({"rules", f.file}, {{"ANKA_USER", "zed"}}), "unknown user zed");

  const Run retracted = f.Alice({"retract", f.file, "staff", "com.veertu.ankahv.fs"});
  CHECK_OK(retracted);
  CHECK(retracted.out == "retracted 1 rule(s) from staff\n");
  CHECK(Policy({"rules", f.file, "devs"}).out ==
        "com.veertu.ankahv.usb.host=allow  from group devs\n");
  CheckError(f.Alice({"retract", f.file, "nobody", "x"}), "no user or group named nobody");
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
}

TEST_CASE("assign refuses a bad verdict, a rule without one and an unknown subject") {
  Fixture f;
  const std::string before = ReadFile(f.file);
  const Run maybe = f.Alice({"assign", f.file, "alice", "com.veertu.ankahv.start=1",
                             "com.veertu.ankahv.fs=maybe"});
  CheckError(maybe, "bad verdict 'maybe' for rule com.veertu.ankahv.fs");
  CheckError(f.Alice({"assign", f.file, "alice", "com.veertu.ankahv.fs"}), "RULE=VERDICT");
  CheckError(f.Alice({"assign", f.file, "alice", "=deny"}), "RULE=VERDICT");
  CheckError(f.Alice({"assign", f.file, "nobody", "a.b=1"}), "no user or group named nobody");
  CHECK(ReadFile(f.file) == before);
}

TEST_CASE("decide: exit 0 allow, 1 deny, 2 error, with the rule that decided") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  CHECK_OK(f.Alice({"addgroup", f.file, "devs"}));
  CHECK_OK(f.Alice({"join", f.file, "bob", "devs"}));
  CHECK_OK(f.Alice({"assign", f.file, "devs", "com.veertu.ankahv.fs=deny"}));
  CHECK_OK(f.Alice({"assign", f.file, "bob", "com.veertu.ankahv.fs./Users/bob/work=allow"}));
  const Env bob = {{"ANKA_USER", "bob"}};  // No password: decide needs none.

  const Run deny = Policy({"decide", f.file, "com.veertu.ankahv.fs./etc"}, bob);
  CHECK(deny.exit_code == 1);
  CHECK(deny.err.empty());
  CHECK_THAT(deny.out, Catch::StartsWith("deny: com.veertu.ankahv.fs=deny (group devs"));
  const Run allow = Policy({"decide", f.file, "com.veertu.ankahv.fs./Users/bob/work/x"}, bob);
  CHECK(allow.exit_code == 0);
  CHECK(allow.out == "allow: com.veertu.ankahv.fs./Users/bob/work=allow (user bob)\n");
  const Run runtime = Policy({"decide", f.file, "com.veertu.ankahv.start"}, bob);
  CHECK(runtime.exit_code == 0);
  CHECK_THAT(runtime.out, Catch::StartsWith("allow: com.veertu.ankahv.start (default"));
  const Run cfg = Policy({"decide", f.file, "com.veertu.anka.cfg.cpu"}, bob);
  CHECK(cfg.exit_code == 1);
  CHECK_THAT(cfg.out, Catch::StartsWith("deny: com.veertu.anka.cfg.cpu (default"));
  CHECK(Policy({"decide", f.file, "com.veertu.anka.cfg.cpu"}, {{"ANKA_USER", "alice"}})
            .exit_code == 0);
  CHECK(Policy({"-l", "alice", "decide", f.file, "com.veertu.anka.cfg.cpu"}, bob).exit_code == 0);

  CheckError(Policy({"decide", f.file, "com.veertu.ankahv.start"}, {{"ANKA_USER", "zed"}}),
             "unknown user zed");
  CheckError(Policy({"decide", f.tmp.Sub("missing.json"), "a.b"}, bob), "no such file");
}

// ---- A tampered or broken policy file --------------------------------------------------------

// The policy file's events: the base64 strings of its "events" array, as offsets into the text.
std::vector<std::pair<size_t, size_t>> EventSpans(const std::string& text) {
  std::vector<std::pair<size_t, size_t>> spans;
  size_t at = text.find('[', text.find("\"events\""));
  REQUIRE(at != std::string::npos);
  for (;;) {
    const size_t open = text.find('"', at + 1);
    const size_t end = text.find(']', at + 1);
    if (open == std::string::npos || open > end) break;
    const size_t close = text.find('"', open + 1);
    spans.emplace_back(open + 1, close);
    at = close;
  }
  return spans;
}

TEST_CASE("a byte changed in an event fails every command that loads the policy, naming it") {
  Fixture f;
  CHECK_OK(f.Alice({"addgroup", f.file, "devs"}));
  CHECK_OK(f.Alice({"assign", f.file, "devs", "com.veertu.ankahv.fs=deny"}));
  CHECK_OK(f.Alice({"addgroup", f.file, "qa"}));
  const std::string yaml = f.dir + "/vm.yaml";
  WriteFile(yaml, "cpu: 2\n");
  CHECK_OK(f.Alice({"sign", f.file, yaml}));
  std::string text = ReadFile(f.file);
  const auto spans = EventSpans(text);
  REQUIRE(spans.size() == 4);
  // The third event (assign): a character in the middle of its base64 changes its bytes.
  const size_t at = (spans[2].first + spans[2].second) / 2;
  text[at] = text[at] == 'A' ? 'B' : 'A';
  WriteFile(f.file, text);

  const std::vector<std::vector<std::string>> commands = {
      {"users", f.file},
      {"groups", f.file},
      {"rules", f.file},
      {"decide", f.file, "com.veertu.ankahv.fs"},
      {"addgroup", f.file, "ops"},
      {"adduser", f.file, "bob"},
      {"delete", f.file, "qa"},
      {"join", f.file, "alice", "qa"},
      {"leave", f.file, "alice", "qa"},
      {"assign", f.file, "qa", "a.b=1"},
      {"retract", f.file, "devs", "com.veertu.ankahv.fs"},
      {"sign", f.file, yaml},
      {"validate", f.file, yaml},
  };
  for (const auto& args : commands) {
    INFO(args[0]);
    const Run r = f.Alice(args);
    CheckError(r, f.file + ": event");
    CHECK_THAT(r.err, Catch::Contains(f.file + ": event 3 (assign)"));
  }
  CHECK(ReadFile(f.file) == text);
  CHECK(Listing(f.dir) == (std::vector<std::string>{"policy.json", "vm.yaml"}));
}

TEST_CASE("a removed event, a file that is not a policy and a missing file are errors") {
  Fixture f;
  CHECK_OK(f.Alice({"addgroup", f.file, "devs"}));
  CHECK_OK(f.Alice({"addgroup", f.file, "qa"}));
  std::string text = ReadFile(f.file);
  const auto spans = EventSpans(text);
  REQUIRE(spans.size() == 3);
  // Remove the second event (and the comma before the third).
  text.erase(spans[1].first - 1, spans[2].first - spans[1].first);
  WriteFile(f.file, text);
  CheckError(Policy({"users", f.file}), "event");
  WriteFile(f.file, "{\"hello\": 1}\n");
  CheckError(Policy({"groups", f.file}), f.file + ": ");
  WriteFile(f.file, "");
  CheckError(Policy({"users", f.file}), f.file + ": ");
  CheckError(Policy({"users", f.dir + "/nope.json"}), "nope.json: no such file");
  CheckError(f.Alice({"addgroup", f.dir + "/nope.json", "g"}), "nope.json: no such file");
  CheckError(Policy({"users", f.dir}), "is a directory");
}

// ---- sign and validate -------------------------------------------------------------------------

constexpr char kYaml[] = "name: build-vm\ncpu: 4\nram: 8G\nvnc:\n  port: 5900\n";

TEST_CASE("sign then validate; a second sign replaces the line; an edit is tampering") {
  Fixture f;
  const std::string yaml = f.dir + "/vm.yaml";
  WriteFile(yaml, kYaml);
  const Run unsigned_run = Policy({"validate", f.file, yaml});
  CHECK(unsigned_run.exit_code == 1);
  CHECK(unsigned_run.out == "unsigned\n");

  const Run sign = f.Alice({"sign", f.file, yaml});
  CHECK_OK(sign);
  CHECK(sign.out == "signed " + yaml + " as alice\n");
  std::string text = ReadFile(yaml);
  CHECK_THAT(text, Catch::StartsWith(kYaml));
  std::vector<std::string> lines = Lines(text);
  CHECK(lines.size() == Lines(kYaml).size() + 1);
  CHECK_THAT(lines.back(), Catch::StartsWith("# policy-signature: alice "));
  CHECK(text.back() == '\n');
  const Run valid = Policy({"validate", f.file, yaml});  // No password.
  CHECK(valid.exit_code == 0);
  CHECK(valid.out == "valid (signed by alice)\n");
  CHECK(valid.err.empty());

  // Signing again replaces the signature: still one line.
  CHECK_OK(f.Alice({"adduser", f.file, "bob", "--admin"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  CHECK_OK(Policy({"sign", f.file, yaml}, As("bob", "bob-pw")));
  text = ReadFile(yaml);
  CHECK_THAT(text, Catch::StartsWith(kYaml));
  CHECK(Lines(text).size() == Lines(kYaml).size() + 1);
  CHECK(Policy({"validate", f.file, yaml}).out == "valid (signed by bob)\n");

  // An edit after signing.
  std::string edited = text;
  edited.replace(edited.find("cpu: 4"), 6, "cpu: 8");
  WriteFile(yaml, edited);
  const Run tampered = Policy({"validate", f.file, yaml});
  CHECK(tampered.exit_code == 1);
  CHECK_THAT(tampered.out, Catch::StartsWith("tampered"));
  // A line added after the signature.
  WriteFile(yaml, text + "ram: 64G\n");
  CHECK(Policy({"validate", f.file, yaml}).exit_code == 1);
  CHECK_THAT(Policy({"validate", f.file, yaml}).out, Catch::StartsWith("tampered"));
  // The signature claimed by another administrator.
  std::string forged = text;
  forged.replace(forged.find("signature: bob "), 15, "signature: alice ");
  WriteFile(yaml, forged);
  CHECK(Policy({"validate", f.file, yaml}).exit_code == 1);
  // A garbled signature line.
  WriteFile(yaml, std::string(kYaml) + "# policy-signature: alice\n");
  CHECK(Policy({"validate", f.file, yaml}).exit_code == 1);
  WriteFile(yaml, std::string(kYaml) + "# policy-signature: bob !!notbase64!!\n");
  CHECK(Policy({"validate", f.file, yaml}).exit_code == 1);
  CHECK(Listing(f.dir) == (std::vector<std::string>{"policy.json", "vm.yaml"}));
}

TEST_CASE("validate: a signer who is no longer an administrator, or not a user, fails") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob", "--admin"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  const std::string yaml = f.dir + "/vm.yaml";
  WriteFile(yaml, "cpu: 2");  // No final newline: sign adds one before its line.
  CHECK_OK(Policy({"sign", f.file, yaml}, As("bob", "bob-pw")));
  CHECK_THAT(ReadFile(yaml), Catch::StartsWith("cpu: 2\n# policy-signature: bob "));
  CHECK(Policy({"validate", f.file, yaml}).exit_code == 0);
  CHECK_OK(f.Alice({"leave", f.file, "bob", "administrators"}));
  const Run demoted = Policy({"validate", f.file, yaml});
  CHECK(demoted.exit_code == 1);
  CHECK_THAT(demoted.out, Catch::Contains("bob") && Catch::Contains("not an administrator"));
  CHECK_OK(f.Alice({"delete", f.file, "bob"}));
  CHECK(Policy({"validate", f.file, yaml}).exit_code == 1);
}

TEST_CASE("sign and validate errors: not an administrator, wrong password, missing files") {
  Fixture f;
  CHECK_OK(f.Alice({"adduser", f.file, "bob"}, {{"ANKA_NEW_PASSWORD", "bob-pw"}}));
  const std::string yaml = f.dir + "/vm.yaml";
  WriteFile(yaml, kYaml);
  CheckError(Policy({"sign", f.file, yaml}, As("bob", "bob-pw")), "bob is not an administrator");
  CheckError(Policy({"sign", f.file, yaml}, As("alice", "bad")), "wrong password for alice");
  CHECK(ReadFile(yaml) == kYaml);
  CheckError(f.Alice({"sign", f.file, f.dir + "/none.yaml"}), "none.yaml: no such file");
  CheckError(Policy({"validate", f.file, f.dir + "/none.yaml"}), "none.yaml: no such file");
  CheckError(Policy({"validate", f.dir + "/none.json", yaml}), "none.json: no such file");
  CHECK(Listing(f.dir) == (std::vector<std::string>{"policy.json", "vm.yaml"}));
}

// ---- Atomic writes and concurrent changes ------------------------------------------------------

TEST_CASE("a write that fails half-way leaves the old file and no temporary file") {
  Fixture f;
  const std::string before = ReadFile(f.file);
  REQUIRE(before.size() > 2048);
  const Run r = Policy({"addgroup", f.file, "devs"}, As("alice", "alice-pw"), 1024);
  CheckError(r, "cannot write " + f.file);
  CHECK(ReadFile(f.file) == before);
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
  // A create that fails leaves nothing at all.
  const Run create = Policy({"create", f.dir + "/new.json"}, As("alice", "pw"), 1024);
  CheckError(create, "cannot write");
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
  // So does a sign: the yaml keeps its bytes.
  const std::string yaml = f.dir + "/vm.yaml";
  WriteFile(yaml, std::string(900, '#') + "\n");
  CheckError(Policy({"sign", f.file, yaml}, As("alice", "alice-pw"), 1024), "cannot write");
  CHECK(ReadFile(yaml) == std::string(900, '#') + "\n");
  CHECK(Listing(f.dir) == (std::vector<std::string>{"policy.json", "vm.yaml"}));
}

TEST_CASE("concurrent changes to one policy all land") {
  Fixture f;
  TempDir capture;
  std::vector<pid_t> pids;
  for (int i = 0; i < 4; ++i) {
    pids.push_back(
        Start(capture, i, {"addgroup", f.file, "g" + std::to_string(i)}, As("alice", "alice-pw")));
  }
  for (int i = 0; i < 4; ++i) CHECK_OK(Finish(capture, i, pids[static_cast<size_t>(i)]));
  CHECK(Policy({"groups", f.file}).out ==
        "administrators  -\ng0              -\ng1              -\ng2              -\n"
        "g3              -\nstandard        -\n");
  CHECK(Listing(f.dir) == std::vector<std::string>{"policy.json"});
}

// ---- The terminal ------------------------------------------------------------------------------

// policy args run on a pty (its controlling terminal), answering each prompt in turn.
struct PtyRun {
  int exit_code = -1;
  std::string output;   // Everything the terminal showed.
  bool echo_after = false;  // ECHO was on again once the tool exited.
};

PtyRun RunOnPty(const std::vector<std::string>& args, const Env& env,
                const std::vector<std::pair<std::string, std::string>>& dialog) {
  Argv a(args, env);
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execve(a.binary.c_str(), a.argv.data(), a.envp.data());
    _exit(127);
  }
  PtyRun run;
  size_t step = 0;
  size_t seen = 0;  // Output already matched against a prompt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    struct pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buffer[1024];
    const ssize_t n = read(master, buffer, sizeof(buffer));
    if (n <= 0) break;  // EIO: the tool closed the terminal.
    run.output.append(buffer, static_cast<size_t>(n));
    if (step < dialog.size()) {
      const size_t at = run.output.find(dialog[step].first, seen);
      if (at != std::string::npos) {
        seen = at + dialog[step].first.size();
        const std::string answer = dialog[step].second + "\n";
        REQUIRE(write(master, answer.data(), answer.size()) ==
                static_cast<ssize_t>(answer.size()));
        ++step;
      }
    }
  }
  struct termios t;
  run.echo_after = tcgetattr(master, &t) == 0 && (t.c_lflag & ECHO) != 0;
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  close(master);
  REQUIRE(WIFEXITED(status));
  run.exit_code = WEXITSTATUS(status);
  CHECK(step == dialog.size());
  return run;
}

TEST_CASE("passwords typed on the terminal are not echoed and are used") {
  TempDir tmp;
  const std::string file = tmp.Sub("policy.json");
  const Env alice = {{"ANKA_USER", "alice"}};
  const PtyRun create = RunOnPty({"create", file}, alice,
                                 {{"New password for alice: ", "tty-secret-1"},
                                  {"Retype new password for alice: ", "tty-secret-1"}});
  INFO(create.output);
  CHECK(create.exit_code == 0);
  CHECK_THAT(create.output, !Catch::Contains("tty-secret"));
  CHECK_THAT(create.output, Catch::Contains("created " + file));
  CHECK(create.echo_after);

  const PtyRun add = RunOnPty({"adduser", file, "bob", "--admin"}, alice,
                              {{"Password for alice: ", "tty-secret-1"},
                               {"New password for bob: ", "tty-bob-2"},
                               {"Retype new password for bob: ", "tty-bob-2"}});
  INFO(add.output);
  CHECK(add.exit_code == 0);
  CHECK_THAT(add.output, !Catch::Contains("tty-secret") && !Catch::Contains("tty-bob"));
  // The typed passwords are the ones the policy now holds.
  CHECK_OK(Policy({"addgroup", file, "devs"}, As("alice", "tty-secret-1")));
  CHECK_OK(Policy({"addgroup", file, "qa"}, As("bob", "tty-bob-2")));

  // ANKA_PASSWORD, when set, is used without asking.
  const PtyRun quiet = RunOnPty({"addgroup", file, "ops"}, As("alice", "tty-secret-1"), {});
  CHECK(quiet.exit_code == 0);
  CHECK_THAT(quiet.output, !Catch::Contains("Password"));

  const PtyRun wrong =
      RunOnPty({"addgroup", file, "x"}, alice, {{"Password for alice: ", "wrong-one"}});
  CHECK(wrong.exit_code == 2);
  CHECK_THAT(wrong.output, Catch::Contains("policy: wrong password for alice"));
  CHECK_THAT(wrong.output, !Catch::Contains("wrong-one"));
}

TEST_CASE("a new password typed twice must match") {
  TempDir tmp;
  const std::string file = tmp.Sub("policy.json");
  CHECK_OK(Policy({"create", file}, As("alice", "alice-pw")));
  const PtyRun mismatch = RunOnPty({"adduser", file, "bob"}, As("alice", "alice-pw"),
                                   {{"New password for bob: ", "first-try"},
                                    {"Retype new password for bob: ", "second-try"}});
  INFO(mismatch.output);
  CHECK(mismatch.exit_code == 2);
  CHECK_THAT(mismatch.output, Catch::Contains("policy: the passwords typed for bob do not match"));
  CHECK_THAT(mismatch.output, !Catch::Contains("-try"));
  CHECK(Policy({"users", file}).out == "alice  admin  administrators\n");
  const PtyRun create_mismatch = RunOnPty({"create", tmp.Sub("other.json")}, {{"ANKA_USER", "a"}},
                                          {{"New password for a: ", "one"},
                                           {"Retype new password for a: ", "two"}});
  CHECK(create_mismatch.exit_code == 2);
  CHECK(Listing(tmp.path()) == std::vector<std::string>{"policy.json"});
}

}  // namespace
}  // namespace cloister::tools
