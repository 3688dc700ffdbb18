// qemu_bench: the qemu driver's clone -> Started -> command -> Terminated cycle with real QEMU,
// one VM at a time and then K VMs at once, printing figures (see bench/qemu/README.md).
//
//   qemu_bench --template DIR [--cycles N] [--max-concurrent K] [--rounds R] [--accel tcg|kvm]
//
// DIR is a built template (scripts/guest/build-image prints it). A cycle: Clone (qcow2 overlay),
// Start (returns when QMP reports running), Run "echo ok" (waits for the guest to boot and its
// agent to answer), Stop (ACPI power button), Delete. Every loop is bounded: N sequential
// cycles, then for k = 1..K, k threads doing R cycles each; the scan stops early when a cycle
// fails or the median cycle time passes 4x the single-VM median.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/flags.h"
#include "node/qemu_driver.h"

namespace {

using Clock = std::chrono::steady_clock;
using cloister::node::CloneSpec;
using cloister::node::QemuDriver;

const cloister::bench::Program kProgram{
    "qemu_bench",
    "usage: qemu_bench --template DIR [--cycles N] [--max-concurrent K] [--rounds R] "
    "[--accel tcg|kvm]\n"};

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

struct Cycle {
  bool ok = false;
  std::string error;
  double clone = 0, start = 0, command = 0, stop = 0, remove = 0, total = 0;
};

Cycle RunCycle(QemuDriver* driver, const std::string& name) {
  Cycle c;
  const auto t0 = Clock::now();
  CloneSpec spec;
  spec.name = name;
  spec.template_id = "bench";
  auto fail = [&](const std::string& what) {
    c.error = what;
    (void)driver->Delete(name);
    return c;
  };
  if (auto s = driver->Clone(spec); !s.ok()) return fail(s.ToString());
  const auto t1 = Clock::now();
  if (auto s = driver->Start(name); !s.ok()) return fail(s.ToString());
  const auto t2 = Clock::now();
  auto out = driver->Run(name, "echo ok");
  if (!out.ok()) return fail(out.status().ToString());
  if (out->output != "ok\n") return fail("unexpected output " + out->output);
  const auto t3 = Clock::now();
  if (auto s = driver->Stop(name); !s.ok()) return fail(s.ToString());
  const auto t4 = Clock::now();
  if (auto s = driver->Delete(name); !s.ok()) return fail(s.ToString());
  const auto t5 = Clock::now();
  c.ok = true;
  c.clone = Seconds(t0, t1);
  c.start = Seconds(t1, t2);
  c.command = Seconds(t2, t3);
  c.stop = Seconds(t3, t4);
  c.remove = Seconds(t4, t5);
  c.total = Seconds(t0, t5);
  return c;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

template <typename Field>
std::vector<double> Column(const std::vector<Cycle>& cycles, Field field) {
  std::vector<double> values;
  for (const Cycle& c : cycles) values.push_back(c.*field);
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  std::string template_dir;
  long cycles = 5;
  long max_concurrent = 4;
  long rounds = 2;
  std::string accel = "tcg";
  kProgram.ParseFlags(argc, argv, [&](const std::string& flag, const char* value) {
    if (flag == "--template") template_dir = value;
    else if (flag == "--cycles") cycles = kProgram.PositiveNumber(flag, value, 100);
    else if (flag == "--max-concurrent") max_concurrent = kProgram.PositiveNumber(flag, value, 16);
    else if (flag == "--rounds") rounds = kProgram.PositiveNumber(flag, value, 20);
    else if (flag == "--accel") accel = value;
    else return false;
    return true;
  });
  if (template_dir.empty()) kProgram.BadArguments("--template is required");
  cloister::node::QemuOptions options;
  if (!cloister::node::ParseQemuAccel(accel, &options.accel)) {
    kProgram.BadArguments("--accel: auto, tcg or kvm");
  }
  const std::string scratch = std::filesystem::temp_directory_path().string() + "/qemu_bench." +
                              std::to_string(getpid());
  std::filesystem::create_directories(scratch + "/templates/bench");
  std::filesystem::create_directory_symlink(std::filesystem::absolute(template_dir),
                                            scratch + "/templates/bench/v1");
  options.vm_dir = scratch + "/vms";
  options.templates_dir = scratch + "/templates";
  auto opened = QemuDriver::Open(options);
  if (!opened.ok()) kProgram.Die(opened.status().ToString());
  QemuDriver* driver = opened->get();
  std::printf("qemu_bench: accel %s, template %s, nproc %u\n", accel.c_str(),
              template_dir.c_str(), std::thread::hardware_concurrency());

  std::vector<Cycle> single;
  for (long i = 0; i < cycles; i++) {
    Cycle c = RunCycle(driver, "seq-" + std::to_string(i));
    if (!c.ok) kProgram.Die("cycle " + std::to_string(i) + ": " + c.error);
    single.push_back(c);
  }
  std::printf("\none VM at a time, %ld cycles (median s; min-max of the total)\n", cycles);
  std::printf("  clone %.3f  start %.3f  boot+command %.3f  stop %.3f  delete %.3f\n",
              Median(Column(single, &Cycle::clone)), Median(Column(single, &Cycle::start)),
              Median(Column(single, &Cycle::command)), Median(Column(single, &Cycle::stop)),
              Median(Column(single, &Cycle::remove)));
  const std::vector<double> totals = Column(single, &Cycle::total);
  const double single_median = Median(totals);
  std::printf("  cycle %.3f (%.3f-%.3f)\n", single_median,
              *std::min_element(totals.begin(), totals.end()),
              *std::max_element(totals.begin(), totals.end()));

  std::printf("\nk VMs at once, %ld cycles each\n", rounds);
  std::printf("  %-3s %-12s %-14s %-12s %-10s\n", "k", "cycle med s", "boot+cmd med s",
              "cycles/min", "failures");
  long sustained = 0;
  for (long k = 1; k <= max_concurrent; k++) {
    std::mutex mu;
    std::vector<Cycle> done;
    std::vector<std::thread> threads;
    const auto start = Clock::now();
    for (long t = 0; t < k; t++) {
      threads.emplace_back([&, t] {
        for (long r = 0; r < rounds; r++) {
          Cycle c = RunCycle(driver, "k" + std::to_string(k) + "-" + std::to_string(t) + "-" +
                                         std::to_string(r));
          std::lock_guard<std::mutex> lock(mu);
          done.push_back(c);
          if (!c.ok) return;
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    const double wall = Seconds(start, Clock::now());
    std::vector<Cycle> good;
    long failures = 0;
    for (const Cycle& c : done) {
      if (c.ok) good.push_back(c);
      else failures++;
    }
    const double median = Median(Column(good, &Cycle::total));
    std::printf("  %-3ld %-12.3f %-14.3f %-12.1f %-10ld\n", k, median,
                Median(Column(good, &Cycle::command)), 60.0 * good.size() / wall, failures);
    for (const Cycle& c : done) {
      if (!c.ok) std::printf("      failure: %s\n", c.error.c_str());
    }
    if (failures > 0 || median > 4 * single_median) break;
    sustained = k;
  }
  std::printf("\nsustained: %ld concurrent VMs (every cycle passed, median cycle <= 4x one VM's)\n",
              sustained);
  opened->reset();
  std::error_code ignored;
  std::filesystem::remove_all(scratch, ignored);
  return 0;
}
