// Scheduler throughput: instances placed per second, with a queue of waiting instances and a
// fleet of Active nodes, through the real engine (validate, stamp, durable append, apply) on a
// temporary log. Also the plan alone (PlanPlacements on the same views), which is the
// scheduler's own cost without the log.
//
//   bazel run -c opt //bench:scheduler_bench -- [--instances N] [--nodes N] [--rounds N]
//
// Prints figures; not a test. Each round: a fresh log, N nodes joined and Active (capacity
// instances/nodes + 1, in 4 node groups), N instances requested in requests of 10, then
// ScheduleVms passes until every instance is placed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/queue_poster.h"
#include "engine/rng.h"
#include "engine/scheduler.h"
#include "log/log.h"

namespace cloister::bench {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "scheduler_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Flags {
  size_t instances = 1000;
  size_t nodes = 100;
  int rounds = 3;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const long value = std::atol(argv[i + 1]);
    if (value <= 0) Die("bad value for " + name);
    if (name == "--instances") flags.instances = static_cast<size_t>(value);
    else if (name == "--nodes") flags.nodes = static_cast<size_t>(value);
    else if (name == "--rounds") flags.rounds = static_cast<int>(value);
    else Die("unknown flag " + name + " (--instances N --nodes N --rounds N)");
  }
  return flags;
}

struct Round {
  double place_seconds = 0;
  double plan_seconds = 0;
  int passes = 0;
};

Round RunRound(const Flags& flags, const std::string& dir) {
  log::Options log_options;
  log_options.dir = dir;
  auto log = log::Log::Open(log_options);
  if (!log.ok()) Die(log.status().ToString());
  engine::SimClock clock(1'795'003'200'000'000'000);
  engine::SeededRng rng(7);
  engine::QueuePoster poster;
  engine::EngineOptions options;
  options.log = log->get();
  options.clock = &clock;
  options.rng = &rng;
  options.poster = &poster;
  options.snapshot_interval_events = 0;
  auto opened = engine::Engine::Open(options);
  if (!opened.ok()) Die(opened.status().ToString());
  engine::Engine& eng = **opened;
  auto run = [&](engine::Command command) {
    std::optional<engine::Reply> reply;
    eng.Submit(engine::Principal::System(), std::move(command), "bench",
               [&](engine::Reply r) { reply = std::move(r); });
    if (!poster.RunUntil([&] { return reply.has_value(); }, std::chrono::seconds(60)) ||
        !reply->ok()) {
      Die("a setup command failed: " + (reply ? reply->message : std::string("timeout")));
    }
    return *reply;
  };
  std::vector<std::string> groups;
  for (int g = 0; g < 4; g++) {
    groups.push_back(run(engine::CreateNodeGroup{"g" + std::to_string(g), "", ""}).ids.at(0));
  }
  const uint32_t capacity = static_cast<uint32_t>(flags.instances / flags.nodes + 1);
  for (size_t n = 0; n < flags.nodes; n++) {
    engine::JoinNode join;
    join.node_name = "node-" + std::to_string(n);
    join.capacity = capacity;
    join.groups = {groups[n % groups.size()]};
    const std::string id = run(join).ids.at(0);
    engine::UpdateNodeStatus active;
    active.node_id = id;
    active.state = fb::NodeState::Active;
    run(active);
  }
  for (size_t i = 0; i < flags.instances; i += 10) {
    engine::RequestVm request;
    request.vmid = "tmpl";
    request.count = static_cast<uint32_t>(std::min<size_t>(10, flags.instances - i));
    request.group_id = groups[(i / 10) % groups.size()];
    request.priority = static_cast<uint32_t>(1 + (i * 7919) % 10000);
    run(request);
  }
  Round round;
  const auto plan_start = Clock::now();
  const size_t planned = engine::PlanPlacements(eng.views(), flags.instances).size();
  round.plan_seconds = std::chrono::duration<double>(Clock::now() - plan_start).count();
  if (planned != flags.instances) Die("the plan placed " + std::to_string(planned));
  const auto start = Clock::now();
  size_t placed = 0;
  while (placed < flags.instances) {
    const engine::Reply reply = run(engine::ScheduleVms{100});
    if (reply.ids.empty()) Die("a pass placed nothing with instances waiting");
    placed += reply.ids.size();
    round.passes++;
  }
  round.place_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Pair check: every instance has a node, and no node is over capacity.
  std::map<std::string, uint32_t> load;
  for (const auto& [id, vm] : eng.views().vm_instances.instances) {
    if (vm.node_id.empty()) Die("instance " + id + " was not placed");
    if (++load[vm.node_id] > capacity) Die("node " + vm.node_id + " over capacity");
  }
  if (!eng.Idle() || !eng.Close().ok()) Die("engine did not close cleanly");
  return round;
}

int Run(const Flags& flags) {
  std::printf("scheduler_bench: %zu instances waiting, %zu Active nodes, passes of 100, "
              "%d rounds\n",
              flags.instances, flags.nodes, flags.rounds);
  std::vector<double> rates;
  for (int r = 0; r < flags.rounds; r++) {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("cloister-scheduler-bench-" +
                                                    std::to_string(getpid()) + "-" +
                                                    std::to_string(r)))
            .string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const Round round = RunRound(flags, dir);
    std::filesystem::remove_all(dir);
    const double rate = static_cast<double>(flags.instances) / round.place_seconds;
    rates.push_back(rate);
    std::printf("round %d: placed %zu in %.3f s over %d passes: %.0f placements/s "
                "(durable, through the engine); the plan alone %.2f ms\n",
                r + 1, flags.instances, round.place_seconds, round.passes, rate,
                round.plan_seconds * 1e3);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("median: %.0f placements/s\n", rates[rates.size() / 2]);
  return 0;
}

}  // namespace
}  // namespace cloister::bench

int main(int argc, char** argv) {
  return cloister::bench::Run(cloister::bench::ParseFlags(argc, argv));
}
