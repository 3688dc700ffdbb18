// `policy`: the Anka Secure policy tool (seed 000, "Policy Management Tool"; issue 7), as a
// function of its arguments, environment and terminal so that tests can run it in-process.
//
//   policy [options] <command> ...     -l,--login <val>, --version, --help
//
// Commands: create, adduser, addgroup, delete, join, leave (change the policy: an administrator's
// password), users, groups, rules, decide (read only, no password), sign (an administrator's
// password) and validate (no password). `policy <command> --help` prints the command's usage.
// docs/policy-tool.md shows every command in an example session.
//
// The current user is --login, else ANKA_USER, else the OS user. A password is ANKA_PASSWORD,
// else asked on the terminal without echo, else empty (with a warning on stderr: valid but
// insecure). A new user's password (adduser, join administrators) is ANKA_NEW_PASSWORD, else asked
// on the terminal (twice for a new password, which must match), else empty with a warning.
//
// Exit status: 0 success; 2 an error (one line on stderr, "policy: ..."), including bad
// arguments; `decide`: 0 allow, 1 deny; `validate`: 0 valid, 1 tampered, unsigned or signed by
// someone who is not an administrator.
//
// Files are never left half-written: the new content goes to FILE.tmp-XXXXXX beside FILE, is
// fsynced and renamed over FILE (linked, for create, so that an existing FILE is never replaced);
// the temporary file never outlives the command. Changes to a policy file hold an exclusive
// flock on it from reading to renaming, so two concurrent changes both land. Passwords are never
// printed. Not thread-safe (one call at a time per process).
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace cloister::tools {

// Where passwords are asked for. The tool's is the process's controlling terminal (/dev/tty).
class PolicyTerminal {
 public:
  virtual ~PolicyTerminal() = default;
  // Shows prompt and reads one line without echoing it; nullopt when there is no terminal.
  virtual std::optional<std::string> ReadSecret(const std::string& prompt) = 0;
};

// The controlling terminal, /dev/tty, with echo turned off (termios) while a secret is typed and
// restored afterwards, also when SIGINT, SIGTERM, SIGHUP or SIGQUIT arrives meanwhile.
class DevTty : public PolicyTerminal {
 public:
  std::optional<std::string> ReadSecret(const std::string& prompt) override;
};

// What the tool reads from its environment.
struct PolicyEnvironment {
  std::optional<std::string> user;          // ANKA_USER (unset or empty: nullopt).
  std::optional<std::string> password;      // ANKA_PASSWORD (set, even empty: a password).
  std::optional<std::string> new_password;  // ANKA_NEW_PASSWORD (likewise).
  std::optional<std::string> os_user;       // getpwuid(geteuid()), if it has a name.
  PolicyTerminal* terminal = nullptr;       // Not owned; nullptr: no terminal.
};

// This process's environment variables and OS user, with terminal.
PolicyEnvironment ProcessPolicyEnvironment(PolicyTerminal* terminal);

// Runs `policy args...` (args without the program name); returns the exit status.
int RunPolicy(const std::vector<std::string>& args, const PolicyEnvironment& env, std::FILE* out,
              std::FILE* err);

}  // namespace cloister::tools
