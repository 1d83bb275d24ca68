// cluster/vm_child: a node's VM process, with real processes (/bin/sh stands in for `minihv run`)
// and, where a test needs the child's events, a real control socket served by the test.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "cluster/vm_child.h"
#include "vmm/api.h"
#include "vmm/events.h"

namespace minihv::cluster {
namespace {

using namespace std::chrono_literals;
using Kind = ChildEvent::Kind;

pid_t plain_fork(const std::function<void()>& in_child) {
  const pid_t p = ::fork();
  if (p == 0) in_child();
  return p < 0 ? -errno : p;
}

// Collects a child's events; waits for its end.
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ChildEvent> seen;
  VmChild::OnEvent sink() {
    return [this](const ChildEvent& e) {
      std::lock_guard lock(mu);
      seen.push_back(e);
      cv.notify_all();
    };
  }
  bool wait_end(std::chrono::milliseconds limit = 10s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return !seen.empty() && seen.back().kind == Kind::kEnded; });
  }
  std::vector<Kind> kinds() {
    std::lock_guard lock(mu);
    std::vector<Kind> k;
    for (const auto& e : seen) k.push_back(e.kind);
    return k;
  }
};

struct ChildTest : ::testing::Test {
  std::filesystem::path dir;
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("minihv-vmchild-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  ChildSpec spec(const std::string& script) {
    return {{"/bin/sh", "-c", script}, (dir / "vm.sock").string(), (dir / "vm.console").string(),
            (dir / "vm.log").string(), "# banner\n", -1};
  }
  std::string file(const char* name) {
    std::ifstream f(dir / name);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
};

TEST_F(ChildTest, ConsoleFactsThenExitingThenEndedWithTheStatus) {
  Events ev;
  auto pid = std::make_shared<std::atomic<pid_t>>(-1);
  // stdin is /dev/null: `read` ends at once with status 1 (it would wait on a terminal or pipe).
  auto c = VmChild::spawn(spec("read x; echo \"HB cpu=0 errs=$?\"; echo noise; echo CORRUPT p=1; echo oops >&2; exit 3"),
                          plain_fork, pid, ev.sink());
  ASSERT_TRUE(c) << c.message();
  ASSERT_TRUE(ev.wait_end());
  EXPECT_EQ(ev.kinds(), (std::vector<Kind>{Kind::kConsole, Kind::kConsole, Kind::kExiting, Kind::kEnded}));
  EXPECT_EQ(ev.seen[0].console.kind, ConsoleFact::kHeartbeat);
  EXPECT_EQ(ev.seen[0].console.errs, 1);
  EXPECT_EQ(ev.seen[1].console.kind, ConsoleFact::kCorrupt);
  EXPECT_EQ(ev.seen[3].exit_status, 3);
  EXPECT_EQ(ev.seen[3].why, "");  // it never served an events stream
  EXPECT_EQ(pid->load(), -1);
  EXPECT_EQ(file("vm.console"), "# banner\nHB cpu=0 errs=1\nnoise\nCORRUPT p=1\n");
  EXPECT_EQ(file("vm.log"), "# banner\noops\n");
}

TEST_F(ChildTest, TheChildsOwnEventsAndItsReasonForEnding) {
  VmEvents events;
  auto api = ApiServer::start((dir / "vm.sock").string(),
                              [](const nlohmann::json&, const ApiServer::Progress&) { return nlohmann::json{{"ok", true}}; },
                              {{"events", events.opener()}});
  ASSERT_TRUE(api) << api.message();
  events.publish({{"event", "listening"}, {"address", "127.0.0.1:7000"}});
  events.publish({{"event", "incoming"}, {"progress", {{"round", 1}}}});
  events.publish({{"event", "arrived"}});
  events.publish({{"event", "mystery"}, {"address", 5}});  // unknown: ignored
  events.publish({{"event", "running"}});
  Events ev;
  auto pid = std::make_shared<std::atomic<pid_t>>(-1);
  auto c = VmChild::spawn(spec("sleep 0.5; exit 1"), plain_fork, pid, ev.sink());
  ASSERT_TRUE(c) << c.message();
  events.finish({{"event", "ended"}, {"exit", 1}, {"why", "error"}, {"error", std::string(1000, 'x')}});
  ASSERT_TRUE(ev.wait_end());
  EXPECT_EQ(ev.kinds(), (std::vector<Kind>{Kind::kListening, Kind::kIncoming, Kind::kArrived, Kind::kRunning,
                                           Kind::kExiting, Kind::kEnded}));
  EXPECT_EQ(ev.seen[0].text, "127.0.0.1:7000");
  EXPECT_EQ(ev.seen[1].progress["round"], 1);
  EXPECT_EQ(ev.seen.back().exit_status, 1);
  EXPECT_EQ(ev.seen.back().why, "error");
  EXPECT_EQ(ev.seen.back().text.size(), kMaxErrorText);
}

TEST_F(ChildTest, DestroyingItKillsTheChildAndStillEndsItsEvents) {
  Events ev;
  auto pid = std::make_shared<std::atomic<pid_t>>(-1);
  auto c = VmChild::spawn(spec("exec sleep 60"), plain_fork, pid, ev.sink());
  ASSERT_TRUE(c) << c.message();
  const pid_t p = pid->load();
  ASSERT_GT(p, 0);
  const auto t0 = std::chrono::steady_clock::now();
  c->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_TRUE(ev.wait_end(0ms));
  EXPECT_EQ(ev.seen.back().exit_status, 128 + SIGKILL);
  EXPECT_NE(::kill(p, 0), 0);  // reaped: no such process (or another's, never ours)
}

TEST_F(ChildTest, AForkThatFailsSaysWhy) {
  auto pid = std::make_shared<std::atomic<pid_t>>(-1);
  auto c = VmChild::spawn(spec("true"), [](const std::function<void()>&) { return pid_t{-EAGAIN}; }, pid,
                          [](const ChildEvent&) {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.message().find("fork"), std::string::npos) << c.message();
  EXPECT_NE(c.message().find(std::strerror(EAGAIN)), std::string::npos) << c.message();
  EXPECT_EQ(pid->load(), -1);
}

}  // namespace
}  // namespace minihv::cluster
