#include "tools/policy_cli.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string_view>
#include <utility>

#include "engine/policy_chain.h"
#include "engine/policy_decide.h"
#include "log/status.h"
#include "reducers/policy_model.h"

namespace cloister::tools {
namespace {

using engine::PolicyChain;
using engine::PolicyDecision;
using engine::PolicyLogin;
using engine::PolicySource;
using reducers::PolicyModel;

constexpr int kExitOk = 0;
constexpr int kExitNo = 1;  // decide: deny; validate: tampered, unsigned, not an administrator.
constexpr int kExitError = 2;

constexpr char kVersion[] = "policy (cloister) 1.0";

// The seed's usage text, verbatim.
constexpr char kUsage[] =
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

// ---- Context ------------------------------------------------------------------------------------

struct Context {
  const PolicyEnvironment& env;
  std::FILE* out;
  std::FILE* err;
  std::optional<std::string> login;  // --login.
};

// A command's positional arguments and flags.
struct Invocation {
  std::vector<std::string> args;
  bool admin = false;  // adduser --admin.
};

int Error(Context& c, const std::string& message) {
  std::fprintf(c.err, "policy: %s\n", message.c_str());
  return kExitError;
}

void Warn(Context& c, const std::string& message) {
  std::fprintf(c.err, "policy: warning: %s\n", message.c_str());
}

Result<std::string> CurrentUser(const Context& c) {
  if (c.login.has_value()) return *c.login;
  if (c.env.user.has_value()) return *c.env.user;
  if (c.env.os_user.has_value()) return *c.env.os_user;
  return Status::NotFound("cannot tell who the current user is: use --login or ANKA_USER");
}

// A password: value (an environment variable) if set; else asked on the terminal (twice, and the
// two must match, for a new password); else empty. An empty password works but is insecure, so
// it is said on stderr.
Result<std::string> Password(Context& c, const std::optional<std::string>& value,
                             const char* variable, const std::string& user, bool is_new) {
  std::optional<std::string> password = value;
  if (!password.has_value() && c.env.terminal != nullptr) {
    password = c.env.terminal->ReadSecret((is_new ? "New password for " : "Password for ") +
                                          user + ": ");
    if (password.has_value() && is_new) {
      const std::optional<std::string> again =
          c.env.terminal->ReadSecret("Retype new password for " + user + ": ");
      if (again != password) {
        return Status::InvalidArgument("the passwords typed for " + user + " do not match");
      }
    }
  }
  if (!password.has_value()) {
    Warn(c, std::string("no ") + variable + " and no terminal: using an empty password for " +
                user + " (insecure)");
    return std::string();
  }
  if (password->empty()) {
    Warn(c, "empty password for " + user + " (insecure)");
  }
  return std::move(*password);
}

// ---- Files --------------------------------------------------------------------------------------

// Closes a file descriptor at the end of a scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool ReadAll(int fd, std::string* bytes) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n == 0) return true;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes->append(buffer, static_cast<size_t>(n));
  }
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

Status FileError(const std::string& path, int error) {
  if (error == ENOENT) return Status::NotFound(path + ": no such file");
  return Status::IoError(path + ": " + std::strerror(error));
}

Result<std::string> ReadFile(const std::string& path) {
  const Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return FileError(path, errno);
  struct stat st;
  if (fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(path + ": is a directory");
  }
  std::string bytes;
  if (!ReadAll(fd.get(), &bytes)) return FileError(path, errno);
  return bytes;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes text to FILE.tmp-XXXXXX beside path, fsyncs it and renames it over path (replace) or
// links it to path (!replace: fails if path exists, so a file is never clobbered), then fsyncs
// the directory. The temporary file is removed whatever happens.
Status WriteAtomically(const std::string& path, std::string_view text, mode_t mode,
                       bool replace) {
  std::string temp = path + ".tmp-XXXXXX";
  const int fd = mkstemp(temp.data());
  if (fd < 0) {
    return Status::IoError("cannot write beside " + path + ": " + std::strerror(errno));
  }
  bool written = fchmod(fd, mode) == 0 && WriteAll(fd, text) && fsync(fd) == 0;
  int error = errno;
  if (close(fd) != 0 && written) {
    written = false;
    error = errno;
  }
  if (written && replace && std::rename(temp.c_str(), path.c_str()) != 0) {
    written = false;
    error = errno;
  }
  if (written && !replace && link(temp.c_str(), path.c_str()) != 0) {
    written = false;
    error = errno;
  }
  unlink(temp.c_str());  // After rename: already gone; after link: the other name stays.
  if (!written) {
    if (error == EEXIST) return Status::InvalidArgument(path + " already exists");
    return Status::IoError("cannot write " + path + ": " + std::strerror(error));
  }
  const Fd dir(open(DirectoryOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) fsync(dir.get());  // Best effort: some filesystems refuse a directory.
  return Status::Ok();
}

// A new file's mode: rw-r--r-- less the umask. A policy file is shared in the clear (its keys are
// encrypted) so that users can list their rules.
mode_t CreationMode() {
  const mode_t mask = umask(0);
  umask(mask);
  return 0644 & ~mask;
}

Result<PolicyChain> LoadPolicy(const std::string& path) {
  Result<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  Result<PolicyChain> chain = PolicyChain::Load(*bytes);
  if (!chain.ok()) return Status::Corruption(path + ": " + chain.status().message());
  return chain;
}

// Opens path and takes an exclusive flock on it, retrying when the file was replaced (renamed
// over by another change) while this process waited, so the lock is always on the current file.
Result<int> LockFile(const std::string& path) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FileError(path, errno);
    if (flock(fd, LOCK_EX) != 0) {
      const int error = errno;
      close(fd);
      if (error == EINTR) continue;
      return FileError(path, error);
    }
    struct stat held;
    struct stat now;
    if (fstat(fd, &held) == 0 && stat(path.c_str(), &now) == 0 && held.st_dev == now.st_dev &&
        held.st_ino == now.st_ino) {
      return fd;
    }
    close(fd);  // Replaced meanwhile: lock the new file.
  }
  return Status::Busy(path + ": replaced too often while waiting to change it");
}

// Re-reads the policy at path under its lock, applies change and replaces the file. The policy
// read before the password was asked may be older than the one changed here; change checks
// everything again.
int UpdatePolicy(Context& c, const std::string& path,
                 const std::function<Status(PolicyChain*)>& change) {
  Result<int> locked = LockFile(path);
  if (!locked.ok()) return Error(c, locked.status().message());
  const Fd fd(*locked);
  std::string bytes;
  if (!ReadAll(fd.get(), &bytes)) return Error(c, FileError(path, errno).message());
  Result<PolicyChain> chain = PolicyChain::Load(bytes);
  if (!chain.ok()) return Error(c, path + ": " + chain.status().message());
  if (Status s = change(&*chain); !s.ok()) return Error(c, s.message());
  struct stat st;
  const mode_t mode = fstat(fd.get(), &st) == 0 ? st.st_mode & 07777 : CreationMode();
  if (Status s = WriteAtomically(path, chain->Serialize(), mode, true); !s.ok()) {
    return Error(c, s.message());
  }
  return kExitOk;
}

// ---- Names --------------------------------------------------------------------------------------

bool IsSubject(const PolicyModel& model, const std::string& name) {
  return model.users.contains(name) || model.groups.contains(name);
}

std::string Join(const std::set<std::string>& names) {
  std::string text;
  for (const std::string& name : names) {
    text += text.empty() ? "" : ", ";
    text += name;
  }
  return text.empty() ? "-" : text;
}

// A policy and its administrator, checked before any password is asked for.
struct Change {
  std::string path;
  std::optional<PolicyChain> chain;
  std::string admin;
};

// Loads the policy and checks that the current user may change it (exists, is an administrator).
std::optional<int> PrepareChange(Context& c, const std::string& path, Change* change) {
  change->path = path;
  Result<PolicyChain> chain = LoadPolicy(path);
  if (!chain.ok()) return Error(c, chain.status().message());
  Result<std::string> user = CurrentUser(c);
  if (!user.ok()) return Error(c, user.status().message());
  const PolicyModel& model = chain->model();
  if (!model.users.contains(*user)) return Error(c, "unknown user " + *user);
  if (!model.IsAdministrator(*user)) {
    return Error(c, *user + " is not an administrator of this policy");
  }
  change->chain.emplace(std::move(*chain));
  change->admin = *user;
  return std::nullopt;
}

// The administrator's login, password included.
Result<PolicyLogin> AdminLogin(Context& c, const Change& change) {
  Result<std::string> password =
      Password(c, c.env.password, "ANKA_PASSWORD", change.admin, /*is_new=*/false);
  if (!password.ok()) return password.status();
  return PolicyLogin{change.admin, std::move(*password)};
}

// ---- Commands that change a policy --------------------------------------------------------------

int CmdCreate(Context& c, const Invocation& inv) {
  const std::string& path = inv.args[0];
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) return Error(c, path + " already exists");
  const std::string dir = DirectoryOf(path);
  if (access(dir.c_str(), W_OK) != 0) return Error(c, FileError(dir, errno).message());
  Result<std::string> user = CurrentUser(c);
  if (!user.ok()) return Error(c, user.status().message());
  Result<std::string> password = Password(c, c.env.password, "ANKA_PASSWORD", *user, true);
  if (!password.ok()) return Error(c, password.status().message());
  Result<PolicyChain> chain = PolicyChain::Create(PolicyLogin{*user, std::move(*password)});
  if (!chain.ok()) return Error(c, chain.status().message());
  if (Status s = WriteAtomically(path, chain->Serialize(), CreationMode(), false); !s.ok()) {
    return Error(c, s.message());
  }
  std::fprintf(c.out, "created %s; administrator: %s\n", path.c_str(), user->c_str());
  return kExitOk;
}

int CmdAddUser(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& name = inv.args[1];
  if (change.chain->model().users.contains(name)) return Error(c, "user " + name + " exists");
  if (change.chain->model().groups.contains(name)) return Error(c, name + " is a group");
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  Result<std::string> password = Password(c, c.env.new_password, "ANKA_NEW_PASSWORD", name, true);
  if (!password.ok()) return Error(c, password.status().message());
  const int exit = UpdatePolicy(c, change.path, [&](PolicyChain* chain) {
    return chain->AddUser(*login, name, *password, inv.admin);
  });
  if (exit == kExitOk) {
    std::fprintf(c.out, "added %s %s\n", inv.admin ? "administrator" : "user", name.c_str());
  }
  return exit;
}

int CmdAddGroup(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& name = inv.args[1];
  if (change.chain->model().groups.contains(name)) return Error(c, "group " + name + " exists");
  if (change.chain->model().users.contains(name)) return Error(c, name + " is a user");
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  const int exit = UpdatePolicy(
      c, change.path, [&](PolicyChain* chain) { return chain->AddGroup(*login, name); });
  if (exit == kExitOk) std::fprintf(c.out, "added group %s\n", name.c_str());
  return exit;
}

int CmdDelete(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& name = inv.args[1];
  if (!IsSubject(change.chain->model(), name)) {
    return Error(c, "no user or group named " + name);
  }
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  const int exit = UpdatePolicy(
      c, change.path, [&](PolicyChain* chain) { return chain->Delete(*login, name); });
  if (exit == kExitOk) std::fprintf(c.out, "deleted %s\n", name.c_str());
  return exit;
}

int CmdJoin(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& member = inv.args[1];
  const std::string& group = inv.args[2];
  if (!IsSubject(change.chain->model(), member)) {
    return Error(c, "no user or group named " + member);
  }
  if (!change.chain->model().groups.contains(group)) return Error(c, "no group named " + group);
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  std::optional<std::string> member_password;
  if (group == reducers::kPolicyAdminGroup && change.chain->model().users.contains(member)) {
    // The new administrator's key pair is sealed under its own password.
    Result<std::string> password =
        Password(c, c.env.new_password, "ANKA_NEW_PASSWORD", member, false);
    if (!password.ok()) return Error(c, password.status().message());
    member_password = std::move(*password);
  }
  const int exit = UpdatePolicy(c, change.path, [&](PolicyChain* chain) {
    return chain->Join(*login, member, group, member_password);
  });
  if (exit == kExitOk) std::fprintf(c.out, "%s joined %s\n", member.c_str(), group.c_str());
  return exit;
}

int CmdLeave(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& member = inv.args[1];
  const std::vector<std::string> groups(inv.args.begin() + 2, inv.args.end());
  if (!IsSubject(change.chain->model(), member)) {
    return Error(c, "no user or group named " + member);
  }
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  const int exit = UpdatePolicy(
      c, change.path, [&](PolicyChain* chain) { return chain->Leave(*login, member, groups); });
  if (exit == kExitOk) {
    std::string which;
    for (const std::string& group : groups) which += (which.empty() ? "" : ", ") + group;
    std::fprintf(c.out, "%s left %s\n", member.c_str(),
                 groups.empty() ? "every group" : which.c_str());
  }
  return exit;
}

int CmdAssign(Context& c, const Invocation& inv) {
  const std::string& subject = inv.args[1];
  const std::vector<std::string> rules(inv.args.begin() + 2, inv.args.end());
  for (const std::string& rule : rules) {
    const size_t eq = rule.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Error(c, "expected RULE=VERDICT, not '" + rule + "' (see policy assign --help)");
    }
    const std::string verdict = rule.substr(eq + 1);
    if (!reducers::ParseVerdict(verdict).has_value()) {
      return Error(c, "bad verdict '" + verdict + "' for rule " + rule.substr(0, eq) +
                          " (see policy assign --help)");
    }
  }
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  if (!IsSubject(change.chain->model(), subject)) {
    return Error(c, "no user or group named " + subject);
  }
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  const int exit = UpdatePolicy(
      c, change.path, [&](PolicyChain* chain) { return chain->Assign(*login, subject, rules); });
  if (exit == kExitOk) {
    std::fprintf(c.out, "assigned %zu rule(s) to %s\n", rules.size(), subject.c_str());
  }
  return exit;
}

int CmdRetract(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& subject = inv.args[1];
  const std::vector<std::string> rules(inv.args.begin() + 2, inv.args.end());
  if (!IsSubject(change.chain->model(), subject)) {
    return Error(c, "no user or group named " + subject);
  }
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  const int exit = UpdatePolicy(
      c, change.path, [&](PolicyChain* chain) { return chain->Retract(*login, subject, rules); });
  if (exit == kExitOk) {
    std::fprintf(c.out, "retracted %zu rule(s) from %s\n", rules.size(), subject.c_str());
  }
  return exit;
}

// ---- Commands that read a policy ----------------------------------------------------------------

// Prints rows of cells as columns two spaces apart (the last cell unpadded).
void PrintColumns(std::FILE* out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

int CmdUsers(Context& c, const Invocation& inv) {
  Result<PolicyChain> chain = LoadPolicy(inv.args[0]);
  if (!chain.ok()) return Error(c, chain.status().message());
  const PolicyModel& model = chain->model();
  std::vector<std::vector<std::string>> rows;
  for (const auto& [name, user] : model.users) {
    rows.push_back({name, model.IsAdministrator(name) ? "admin" : "user", Join(user.groups)});
  }
  PrintColumns(c.out, rows);
  return kExitOk;
}

int CmdGroups(Context& c, const Invocation& inv) {
  Result<PolicyChain> chain = LoadPolicy(inv.args[0]);
  if (!chain.ok()) return Error(c, chain.status().message());
  std::vector<std::vector<std::string>> rows;
  for (const auto& [name, group] : chain->model().groups) {
    rows.push_back({name, Join(group.groups)});
  }
  PrintColumns(c.out, rows);
  return kExitOk;
}

// The rules that apply to a group: those a user would get from being in that group alone (the
// group's own at distance 1, its parents' farther). engine::EffectiveRules takes only users, so
// a probe user, whose name no real user has, joins the group in a copy of the model.
std::vector<PolicyDecision> GroupRules(const PolicyModel& model, const std::string& group) {
  PolicyModel copy = model;
  std::string probe = "\x01" + group;
  while (copy.users.contains(probe)) probe += '\x01';
  reducers::PolicySubject& user = copy.users[probe];
  user.name = probe;
  if (group != reducers::kPolicyRootGroup) user.groups.insert(group);
  return engine::EffectiveRules(copy, probe);
}

int CmdRules(Context& c, const Invocation& inv) {
  Result<PolicyChain> chain = LoadPolicy(inv.args[0]);
  if (!chain.ok()) return Error(c, chain.status().message());
  const PolicyModel& model = chain->model();
  std::vector<PolicyDecision> rules;
  if (inv.args.size() > 1) {
    const std::string& subject = inv.args[1];
    if (model.users.contains(subject)) {
      rules = engine::EffectiveRules(model, subject);
    } else if (model.groups.contains(subject)) {
      rules = GroupRules(model, subject);
    } else {
      return Error(c, "no user or group named " + subject);
    }
  } else {
    Result<std::string> user = CurrentUser(c);
    if (!user.ok()) return Error(c, user.status().message());
    if (!model.users.contains(*user)) return Error(c, "unknown user " + *user);
    rules = engine::EffectiveRules(model, *user);
  }
  std::vector<std::vector<std::string>> rows;
  for (const PolicyDecision& rule : rules) {
    const bool own = rule.source == PolicySource::kUser;
    rows.push_back({rule.rule + "=" + (rule.allow ? "allow" : "deny"),
                    std::string("from ") + (own ? "user " : "group ") + rule.subject});
  }
  PrintColumns(c.out, rows);
  return kExitOk;
}

int CmdDecide(Context& c, const Invocation& inv) {
  Result<PolicyChain> chain = LoadPolicy(inv.args[0]);
  if (!chain.ok()) return Error(c, chain.status().message());
  const std::string& rule = inv.args[1];
  if (rule.empty()) return Error(c, "decide: the rule name is empty");
  Result<std::string> user = CurrentUser(c);
  if (!user.ok()) return Error(c, user.status().message());
  if (!chain->model().users.contains(*user)) return Error(c, "unknown user " + *user);
  const PolicyDecision decision = engine::Decide(chain->model(), *user, rule);
  std::string explain = decision.Explain();
  if (decision.rule.empty()) {
    // A default names no rule: put the query after the verdict ("deny: RULE (default: ...)").
    const size_t verdict_end = std::min(explain.find(' '), explain.size());
    explain.insert(verdict_end, ": " + rule);
  }
  std::fprintf(c.out, "%s\n", explain.c_str());
  return decision.allow ? kExitOk : kExitNo;
}

// ---- sign and validate --------------------------------------------------------------------------

int CmdSign(Context& c, const Invocation& inv) {
  Change change;
  if (auto failed = PrepareChange(c, inv.args[0], &change)) return *failed;
  const std::string& path = inv.args[1];
  Result<std::string> yaml = ReadFile(path);
  if (!yaml.ok()) return Error(c, yaml.status().message());
  Result<PolicyLogin> login = AdminLogin(c, change);
  if (!login.ok()) return Error(c, login.status().message());
  Result<std::string> signed_text = change.chain->SignDocument(*login, *yaml);
  if (!signed_text.ok()) return Error(c, signed_text.status().message());
  const std::string& text = *signed_text;
  struct stat st;
  const mode_t mode = stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : CreationMode();
  if (Status s = WriteAtomically(path, text, mode, true); !s.ok()) return Error(c, s.message());
  std::fprintf(c.out, "signed %s as %s\n", path.c_str(), login->user.c_str());
  return kExitOk;
}

int CmdValidate(Context& c, const Invocation& inv) {
  Result<PolicyChain> chain = LoadPolicy(inv.args[0]);
  if (!chain.ok()) return Error(c, chain.status().message());
  const std::string& path = inv.args[1];
  Result<std::string> yaml = ReadFile(path);
  if (!yaml.ok()) return Error(c, yaml.status().message());
  const engine::DocumentCheck check = chain->CheckDocument(*yaml);
  using R = engine::DocumentCheck::Result;
  switch (check.result) {
    case R::kValid:
      break;
    case R::kUnsigned:
      std::fprintf(c.out, "unsigned\n");
      return kExitNo;
    case R::kLinesAfterSignature:
      std::fprintf(c.out, "tampered: lines were added after the signature\n");
      return kExitNo;
    case R::kMalformed:
      std::fprintf(c.out, "tampered: the signature line is malformed\n");
      return kExitNo;
    case R::kNotAdministrator:
      std::fprintf(c.out, "not valid: signed by %s, who is not an administrator of this policy\n",
                   check.signer.c_str());
      return kExitNo;
    case R::kTampered:
      std::fprintf(c.out, "tampered: %s\n", check.message.c_str());
      return kExitNo;
  }
  const std::string& signer = check.signer;
  std::fprintf(c.out, "valid (signed by %s)\n", signer.c_str());
  return kExitOk;
}

// ---- The command line ---------------------------------------------------------------------------

struct CommandSpec {
  const char* name;
  const char* arguments;  // After the command name.
  const char* summary;    // The seed's line.
  const char* details;    // More of the command's usage; each line ends in a newline.
  size_t min_args;
  size_t max_args;
  int (*run)(Context&, const Invocation&);
};

constexpr size_t kMany = SIZE_MAX;

constexpr char kChangeNote[] =
    "\n"
    "The current user (--login, else ANKA_USER, else the OS user) must be an administrator of\n"
    "the policy; its password is ANKA_PASSWORD, else asked on the terminal, else empty.\n";

const CommandSpec kCommands[] = {
    {"create", "FILE", "Create new policy file with initial admin user",
     "\nThe current user (--login, else ANKA_USER, else the OS user) becomes the initial\n"
     "administrator. Its password is ANKA_PASSWORD, else asked twice on the terminal, else\n"
     "empty. An existing FILE is never replaced.\n",
     1, 1, CmdCreate},
    {"adduser", "FILE NAME [--admin]", "Add new user to policy",
     "\n  --admin            Make the new user an administrator\n"
     "\nThe new user's password is ANKA_NEW_PASSWORD, else asked twice on the terminal, else\n"
     "empty.\n",
     2, 2, CmdAddUser},
    {"addgroup", "FILE NAME", "Add new group to policy", "", 2, 2, CmdAddGroup},
    {"delete", "FILE NAME", "Delete user or group from policy",
     "\nThe last administrator cannot be deleted.\n", 2, 2, CmdDelete},
    {"join", "FILE MEMBER GROUP", "Add user/group to certain group",
     "\nMEMBER (a user or a group) joins GROUP. A user joining \"administrators\" needs its own\n"
     "password too: ANKA_NEW_PASSWORD, else asked on the terminal, else empty.\n",
     3, 3, CmdJoin},
    {"leave", "FILE MEMBER [GROUP...]", "Remove user from group(s)",
     "\nWithout GROUP, MEMBER leaves every group. The last administrator cannot leave\n"
     "\"administrators\".\n",
     2, kMany, CmdLeave},
    {"users", "FILE", "List the policy users",
     "\nOne line per user: its name, admin or user, and the groups it joined. No password.\n", 1,
     1, CmdUsers},
    {"groups", "FILE", "List the policy groups",
     "\nOne line per group: its name and the groups it is a member of (\"-\": only the root,\n"
     "standard). No password.\n",
     1, 1, CmdGroups},
    {"assign", "FILE SUBJECT RULE=VERDICT...", "Assign rule(s) to certain user or group",
     "\nVERDICT: allow, enable, 1, yes, on, pass, true; or deny, disable, 0, no, off, block,\n"
     "false (any case). Example: com.veertu.ankahv.fs=deny\n",
     3, kMany, CmdAssign},
    {"retract", "FILE SUBJECT RULE...", "Retract rule(s) from certain user or group", "", 3,
     kMany, CmdRetract},
    {"rules", "FILE [SUBJECT]", "List rules applied to the user or group",
     "\nThe rules that apply to SUBJECT (default: the current user), each with the user or\n"
     "group it comes from. No password.\n",
     1, 2, CmdRules},
    {"decide", "FILE RULENAME", "Evaluate the rule for the user returning corresponding status",
     "\nPrints allow or deny for the current user and the rule that decided. Exit status: 0\n"
     "allow, 1 deny, 2 error. No password.\n",
     2, 2, CmdDecide},
    {"sign", "POLICY FILE.yaml", "Sign input (yaml) file",
     "\nAppends (or replaces) the line \"# policy-signature: <administrator> <base64>\", a\n"
     "signature of the rest of the file by the current user's administrator key.\n",
     2, 2, CmdSign},
    {"validate", "POLICY FILE.yaml", "Validate integrity of (yaml) file",
     "\nChecks the signature `policy sign` added against the policy's administrators. Exit\n"
     "status: 0 valid, 1 tampered, unsigned or not signed by an administrator, 2 error. No\n"
     "password.\n",
     2, 2, CmdValidate},
};

const CommandSpec* FindCommand(const std::string& name) {
  for (const CommandSpec& spec : kCommands) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

bool Changes(const CommandSpec& spec) {
  for (const char* name : {"adduser", "addgroup", "delete", "join", "leave", "assign", "retract",
                           "sign"}) {
    if (std::string_view(spec.name) == name) return true;
  }
  return false;
}

void PrintCommandUsage(std::FILE* out, const CommandSpec& spec) {
  std::fprintf(out, "usage: policy [options] %s %s\n\n   %s\n%s%s", spec.name, spec.arguments,
               spec.summary, spec.details, Changes(spec) ? kChangeNote : "");
}

int UsageError(Context& c, const std::string& message, const CommandSpec* spec) {
  const std::string see = spec != nullptr ? std::string("policy ") + spec->name + " --help"
                                          : std::string("policy --help");
  return Error(c, message + " (see " + see + ")");
}

}  // namespace

std::optional<std::string> DevTty::ReadSecret(const std::string& prompt) {
  // Restores the terminal if a signal ends the process while echo is off.
  static int tty_fd = -1;
  static struct termios saved;
  const int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  if (tcgetattr(fd, &saved) != 0) {
    close(fd);
    return std::nullopt;
  }
  struct termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK);
  quiet.c_lflag |= ICANON;
  const int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  struct sigaction restore = {};
  restore.sa_handler = [](int number) {
    if (tty_fd >= 0) tcsetattr(tty_fd, TCSANOW, &saved);
    signal(number, SIG_DFL);
    raise(number);
  };
  sigemptyset(&restore.sa_mask);
  struct sigaction previous[4];
  for (int i = 0; i < 4; ++i) sigaction(signals[i], &restore, &previous[i]);
  tty_fd = fd;
  tcsetattr(fd, TCSAFLUSH, &quiet);
  WriteAll(fd, prompt);
  std::string line;
  bool complete = false;
  for (char ch; !complete && line.size() < 4096;) {
    const ssize_t n = read(fd, &ch, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (ch == '\n') {
      complete = true;
    } else {
      line += ch;
    }
  }
  tcsetattr(fd, TCSAFLUSH, &saved);
  tty_fd = -1;
  for (int i = 0; i < 4; ++i) sigaction(signals[i], &previous[i], nullptr);
  WriteAll(fd, "\n");
  close(fd);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

PolicyEnvironment ProcessPolicyEnvironment(PolicyTerminal* terminal) {
  PolicyEnvironment env;
  auto variable = [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  env.user = variable("ANKA_USER");
  if (env.user.has_value() && env.user->empty()) env.user.reset();
  env.password = variable("ANKA_PASSWORD");
  env.new_password = variable("ANKA_NEW_PASSWORD");
  if (const struct passwd* pw = getpwuid(geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    env.os_user = std::string(pw->pw_name);
  }
  env.terminal = terminal;
  return env;
}

int RunPolicy(const std::vector<std::string>& args, const PolicyEnvironment& env, std::FILE* out,
              std::FILE* err) {
  Context c{env, out, err, std::nullopt};
  bool help = false;
  bool version = false;
  const CommandSpec* spec = nullptr;
  Invocation inv;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-") {
      if (spec == nullptr) {
        spec = FindCommand(arg);
        if (spec == nullptr) return UsageError(c, "unknown command '" + arg + "'", nullptr);
      } else {
        inv.args.push_back(arg);
      }
    } else if (arg == "--") {
      options_done = true;
    } else if (arg == "--help" || arg == "-h") {
      help = true;
    } else if (arg == "--version") {
      version = true;
    } else if (arg == "-l" || arg == "--login") {
      if (i + 1 == args.size()) return UsageError(c, arg + " needs a user name", spec);
      c.login = args[++i];
    } else if (arg.starts_with("--login=")) {
      c.login = arg.substr(8);
    } else if (arg.starts_with("-l")) {
      c.login = arg.substr(2);
    } else if (arg == "--admin" && spec != nullptr && std::string_view(spec->name) == "adduser") {
      inv.admin = true;
    } else {
      return UsageError(c, "unknown option " + arg, spec);
    }
    if (c.login.has_value() && c.login->empty()) {
      return UsageError(c, "--login needs a user name", spec);
    }
  }
  if (version) {
    std::fprintf(out, "%s\n", kVersion);
    return kExitOk;
  }
  if (help) {
    if (spec == nullptr) {
      std::fputs(kUsage, out);
    } else {
      PrintCommandUsage(out, *spec);
    }
    return kExitOk;
  }
  if (spec == nullptr) {
    std::fputs(kUsage, err);
    return kExitError;
  }
  if (inv.args.size() < spec->min_args) {
    return UsageError(c, std::string(spec->name) + ": expected " + spec->arguments, spec);
  }
  if (inv.args.size() > spec->max_args) {
    return UsageError(c, std::string(spec->name) + ": too many arguments", spec);
  }
  return spec->run(c, inv);
}

}  // namespace cloister::tools
