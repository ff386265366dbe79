// The native loop's cross-thread wake-up (IoManager::EnableWake / Signal):
// another thread's Signal() ends a blocking poll at once, signals coalesce,
// and the wake-up alone keeps nothing alive.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "IoManager.hpp"

namespace grpc_green {
namespace {

struct CountingWake final : WakeHandler {
  int woken = 0;
  void OnWake() noexcept override { ++woken; }
};

struct NoOp final : TimerHandler {
  void OnTimer() noexcept override {}
};

TEST(Wake, AloneKeepsNothingAlive) {
  auto io = NewNativeIoManager();
  ASSERT_TRUE(io);
  CountingWake wake;
  ASSERT_TRUE(io->EnableWake(&wake));
  // Nothing else is watched: the poll does not block, and says so.
  EXPECT_FALSE(io->RunOnce(false));
  EXPECT_EQ(wake.woken, 0);
}

TEST(Wake, SignalFromAnotherThreadEndsTheWait) {
  auto io = NewNativeIoManager();
  ASSERT_TRUE(io);
  CountingWake wake;
  ASSERT_TRUE(io->EnableWake(&wake));
  NoOp noop;
  auto timer = io->NewTimer(&noop);
  ASSERT_TRUE(timer->Start(10));  // what the poll would wait for otherwise
  double start = MonotonicNow();
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    io->Signal();
  });
  while (wake.woken == 0 && MonotonicNow() - start < 5) io->RunOnce(false);
  other.join();
  EXPECT_EQ(wake.woken, 1);
  EXPECT_LT(MonotonicNow() - start, 2.0);
}

TEST(Wake, SignalsCoalesce) {
  auto io = NewNativeIoManager();
  ASSERT_TRUE(io);
  CountingWake wake;
  ASSERT_TRUE(io->EnableWake(&wake));
  std::thread other([&] {
    for (int i = 0; i < 1000; ++i) io->Signal();
  });
  other.join();
  io->RunOnce(true);
  EXPECT_EQ(wake.woken, 1);
  io->DisableWake();
  io->DisableWake();  // twice is fine
}

}  // namespace
}  // namespace grpc_green
