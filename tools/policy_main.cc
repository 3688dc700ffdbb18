// policy: the Anka Secure policy tool (seed 000). Everything but the process's environment and
// terminal is in tools/policy_cli.h, which the tests also run in-process.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/policy_cli.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  cloister::tools::DevTty tty;
  const cloister::tools::PolicyEnvironment env = cloister::tools::ProcessPolicyEnvironment(&tty);
  const int status = cloister::tools::RunPolicy(args, env, stdout, stderr);
  std::fflush(stdout);
  return status;
}
