// What the bench programs that drive a running server (tap_bench, tls_connect_bench) share:
// "--name value" flag parsing with their exit-status contract (0 help, 2 bad arguments), and
// a server's CPU time from /proc. Header-only: each of those programs is one translation unit.
#ifndef CLOISTER_BENCH_FLAGS_H_
#define CLOISTER_BENCH_FLAGS_H_

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace cloister::bench {

// A bench program's name (the prefix of its error lines) and usage text (printed for -h/--help
// and before each bad-argument error).
struct Program {
  const char* name;
  const char* usage;

  void Usage() const { std::fputs(usage, stderr); }

  // Exit status 1 is a failed run, 2 bad arguments: the scripts that run the programs tell
  // the two apart.
  [[noreturn]] void Die(const std::string& what, int code = 1) const {
    std::fprintf(stderr, "%s: %s\n", name, what.c_str());
    std::exit(code);
  }

  [[noreturn]] void BadArguments(const std::string& what) const {
    Usage();
    Die(what, 2);
  }

  // text as a whole number in [1, max], or exits with status 2.
  long PositiveNumber(const std::string& flag, const char* text, long max = LONG_MAX) const {
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value <= 0 || value > max) {
      BadArguments(flag + ": not a positive whole number: " + text);
    }
    return value;
  }

  // Hands each "--name value" pair of argv to on_flag(const std::string& name, const char*
  // value), which returns false for a name it does not know (status 2). -h or --help prints
  // the usage and exits 0.
  template <typename OnFlag>
  void ParseFlags(int argc, char** argv, OnFlag on_flag) const {
    for (int i = 1; i < argc; i++) {
      const std::string flag = argv[i];
      if (flag == "-h" || flag == "--help") {
        Usage();
        std::exit(0);
      }
      if (i + 1 >= argc) BadArguments("missing value for " + flag);
      if (!on_flag(flag, argv[++i])) BadArguments("unknown flag " + flag);
    }
  }
};

// utime + stime of a process (all its threads), in seconds; -1 when pid is not positive or
// its /proc/PID/stat is unreadable.
inline double ProcessCpuSeconds(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: fields are counted after
  // its last ')'.
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; i++) {
    if (i == 14 || i == 15) ticks += std::atof(field.c_str());
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace cloister::bench

#endif  // CLOISTER_BENCH_FLAGS_H_
