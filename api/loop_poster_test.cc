// LoopPoster runs functions posted from other threads on the loop thread, in order, and refuses
// posts once closed.
#include "api/loop_poster.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

namespace cloister::api {
namespace {

TEST_CASE("functions posted from many threads all run on the loop thread, in order per thread") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  auto poster = LoopPoster::Create(&loop);
  REQUIRE(poster.ok());
  const uv_thread_t loop_thread = uv_thread_self();
  constexpr int kThreads = 4;
  constexpr int kPosts = 2000;
  std::vector<std::vector<int>> seen(kThreads);  // Loop thread only.
  std::atomic<int> wrong_thread{0};
  std::atomic<int> refused{0};  // Catch2 assertions are not thread-safe: count, check later.
  int ran = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t]() {
      for (int i = 0; i < kPosts; i++) {
        bool posted = (*poster)->Post([&, t, i]() {
          uv_thread_t self = uv_thread_self();
          if (!uv_thread_equal(&self, &loop_thread)) {
            wrong_thread++;
          }
          seen[t].push_back(i);
          if (++ran == kThreads * kPosts) {
            (*poster)->Close();  // From inside a posted function: allowed.
          }
        });
        refused += posted ? 0 : 1;
      }
    });
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // Returns once Close closed the async handle.
  for (std::thread& thread : threads) {
    thread.join();
  }
  REQUIRE(refused == 0);
  REQUIRE(ran == kThreads * kPosts);
  REQUIRE(wrong_thread == 0);
  for (const std::vector<int>& order : seen) {
    REQUIRE(order.size() == kPosts);
    for (int i = 0; i < kPosts; i++) {
      REQUIRE(order[i] == i);
    }
  }
  REQUIRE(!(*poster)->Post([]() {}));
  poster->reset();
  REQUIRE(uv_loop_close(&loop) == 0);
}

TEST_CASE("Close runs what was already posted, then refuses") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  auto poster = LoopPoster::Create(&loop);
  REQUIRE(poster.ok());
  int ran = 0;
  REQUIRE((*poster)->Post([&]() { ran++; }));
  REQUIRE((*poster)->Post([&]() { ran++; }));
  (*poster)->Close();
  REQUIRE(ran == 2);
  REQUIRE(!(*poster)->Post([&]() { ran++; }));
  uv_run(&loop, UV_RUN_DEFAULT);
  REQUIRE(ran == 2);
  poster->reset();
  REQUIRE(uv_loop_close(&loop) == 0);
}

TEST_CASE("destroying an open poster closes it") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    auto poster = LoopPoster::Create(&loop);
    REQUIRE(poster.ok());
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  REQUIRE(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace cloister::api
