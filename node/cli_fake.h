// FakeCli: a recorded-output stand-in for a hypervisor CLI (anka, tart), for the CLI driver
// tests. It writes DIR/bin/<program>, a bash script that reads DIR/expect, one expected
// invocation per line, and answers each invocation with the recorded exit status, standard
// output and standard error of the first pending expectation, after checking that the argv is
// exactly the expected one. Expectations are consumed in order; one marked background (a
// detached `tart run`, which runs concurrently with the calls that follow) may be consumed at
// any moment. Any other invocation fails loudly: exit 97, a message on stderr, and its argv
// appended to DIR/unexpected, which the test checks. Invocations are serialised with flock.
//
// Not thread-safe; header-only, for tests.
#pragma once

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace cloister::node::fake {

class FakeCli {
 public:
  // dir must exist; the fake lives in dir/bin (made here).
  FakeCli(std::string dir, std::string program) : dir_(std::move(dir)), program_(program) {
    mkdir((dir_ + "/bin").c_str(), 0700);
    std::ofstream(dir_ + "/expect", std::ios::trunc).flush();
    const std::string script = dir_ + "/bin/" + program;
    std::ofstream out(script, std::ios::trunc);
    out << "#!/bin/bash\n"
        << "D='" << dir_ << "'\n"
        << R"FAKE(exec 9>>"$D/lock"
flock -w 30 9 || { echo "fake: no lock" >&2; exit 97; }
got="$(basename "$0")"
for a in "$@"; do got+=$'\x1f'"$a"; done
n=0; match=; fg=; fg_argv=
while IFS=$'\t' read -r bg status sleep_s argv; do
  n=$((n+1))
  [ -e "$D/done.$n" ] && continue
  if [ "$bg" = 1 ]; then
    if [ -z "$match" ] && [ "$argv" = "$got" ]; then match=$n; fi
  elif [ -z "$fg" ]; then
    fg=$n; fg_argv=$argv
  fi
done < "$D/expect"
if [ -z "$match" ] && [ -n "$fg" ] && [ "$fg_argv" = "$got" ]; then match=$fg; fi
if [ -z "$match" ]; then
  printf '%s\n' "$got" | tr '\037' ' ' >> "$D/unexpected"
  echo "fake $(basename "$0"): unexpected invocation: $(printf '%s' "$got" | tr '\037' ' ')" >&2
  exit 97
fi
line=$(sed -n "${match}p" "$D/expect")
IFS=$'\t' read -r bg status sleep_s argv <<< "$line"
touch "$D/done.$match"
cat "$D/out.$match"
cat "$D/err.$match" >&2
flock -u 9
exec 9>&-
if [ "$sleep_s" != 0 ]; then sleep "$sleep_s"; fi
exit "$status"
)FAKE";
    out.close();
    chmod(script.c_str(), 0755);
  }

  // The directory to put first on PATH (or the program's absolute path: bin() + "/" + name).
  std::string bin() const { return dir_ + "/bin"; }
  std::string program_path() const { return bin() + "/" + program_; }

  // The next invocation must be `program argv...`; it prints out and err and exits with
  // exit_status after sleeping sleep_s seconds (a whole number; for the timeout tests).
  void Expect(const std::vector<std::string>& argv, int exit_status, const std::string& out,
              const std::string& err = "", int sleep_s = 0) {
    Add(false, argv, exit_status, out, err, sleep_s);
  }
  // An invocation that may come at any moment from now on (a detached process).
  void ExpectBackground(const std::vector<std::string>& argv, int exit_status,
                        const std::string& out, int sleep_s) {
    Add(true, argv, exit_status, out, "", sleep_s);
  }

  // The expectations not consumed yet, one "program argv..." per entry.
  std::vector<std::string> Pending() const {
    std::vector<std::string> pending;
    for (size_t i = 1; i <= argvs_.size(); ++i) {
      struct stat st {};
      if (stat((dir_ + "/done." + std::to_string(i)).c_str(), &st) != 0) {
        pending.push_back(argvs_[i - 1]);
      }
    }
    return pending;
  }
  // Every invocation that matched no expectation, one per line; empty if none.
  std::string Unexpected() const {
    std::ifstream in(dir_ + "/unexpected");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  void Add(bool background, const std::vector<std::string>& argv, int exit_status,
           const std::string& out, const std::string& err, int sleep_s) {
    std::string joined = program_;
    std::string shown = program_;
    for (const std::string& arg : argv) {
      joined += '\x1f' + arg;
      shown += " " + arg;
    }
    argvs_.push_back(shown);
    const size_t n = argvs_.size();
    std::ofstream(dir_ + "/out." + std::to_string(n), std::ios::binary) << out;
    std::ofstream(dir_ + "/err." + std::to_string(n), std::ios::binary) << err;
    std::ofstream(dir_ + "/expect", std::ios::app)
        << (background ? 1 : 0) << '\t' << exit_status << '\t' << sleep_s << '\t' << joined
        << '\n';
  }

  std::string dir_;
  std::string program_;
  std::vector<std::string> argvs_;
};

}  // namespace cloister::node::fake
