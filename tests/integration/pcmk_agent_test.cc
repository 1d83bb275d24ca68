// The OCF agent ocf:minihv:vm (pcmk/ocf/vm.in, as the build tree has it) and `minihv receiver`,
// driven the way Pacemaker's executor drives them: an action name, OCF_RESKEY_* parameters in the
// environment, the exit code and "ocf-exit-reason:" on stderr. Two "hosts" here are two state
// directories (and a receiver serving one); tests/pacemaker/ runs the agent under a real
// three-node Pacemaker + Corosync cluster.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "tests/harness/harness.h"
#include "tests/harness/netns.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr int kOk = 0, kErrGeneric = 1, kUnimplemented = 3, kNotConfigured = 6, kNotRunning = 7;

std::string agent_path() {
  const std::string bin = minihv_binary();
  return bin.substr(0, bin.rfind('/')) + "/ocf/resource.d/minihv/vm";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The disk workload's heartbeats of vCPU 0 in a console file.
std::vector<Heartbeat> heartbeats(const std::string& console) {
  std::vector<Heartbeat> out;
  std::istringstream in(slurp(console));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("HB cpu=0 ", 0) == 0)
      if (auto hb = parse_heartbeat(line)) out.push_back(*hb);
  return out;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// One VM resource ("v") on a volume disk with the test guest's disk workload; `host(dir)` gives
// the environment of the agent on the host whose state directory is `dir`.
class PcmkAgent : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(run_minihv({"volume", "format", vol_, "--cluster", "p", "--size", "64M"}).rc, 0);
    ASSERT_EQ(run_minihv({"volume", "disk", "create", vol_, "d0", "--size", "8M"}).rc, 0);
    ASSERT_EQ(run_minihv({"cluster", "init-key", "--key", key_}).rc, 0);
  }
  void TearDown() override {
    for (const char* h : {"a", "b"}) (void)act(h, "stop");
  }
  std::vector<std::string> env(const std::string& host, std::vector<std::string> extra = {}) const {
    std::vector<std::string> e{"OCF_ROOT=/usr/lib/ocf", "OCF_RESOURCE_INSTANCE=v",
                               "OCF_RESKEY_binary=" + minihv_binary(), "OCF_RESKEY_kernel=" + testguest_elf(),
                               "OCF_RESKEY_cmdline=disk", "OCF_RESKEY_memory=128M",
                               "OCF_RESKEY_disk=" + vol_ + ":d0", "OCF_RESKEY_key=" + key_,
                               "OCF_RESKEY_state_dir=" + dir_.file(host),
                               "OCF_RESKEY_migration_addresses=a=127.0.0.1:1 b=" + receiver_,
                               "OCF_RESKEY_CRM_meta_migrate_source=a", "OCF_RESKEY_CRM_meta_migrate_target=b"};
    e.insert(e.end(), extra.begin(), extra.end());
    return e;
  }
  CmdResult act(const std::string& host, const std::string& action, std::vector<std::string> extra = {}) const {
    std::vector<std::string> argv{"env"};
    for (auto& e : env(host, std::move(extra))) argv.push_back(std::move(e));
    argv.push_back(agent_path());
    argv.push_back(action);
    return run_cmd(argv);
  }
  std::string console(const std::string& host) const { return dir_.file(host) + "/v.console"; }
  // Waits until the VM on `host` has shown `n` heartbeats of vCPU 0 in all.
  bool wait_heartbeats(const std::string& host, size_t n, std::chrono::seconds limit) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (heartbeats(console(host)).size() < n)
      if (std::chrono::steady_clock::now() > end) return false;
      else std::this_thread::sleep_for(100ms);
    return true;
  }

  TempDir dir_;
  std::string vol_ = dir_.file("vol.img"), key_ = dir_.file("cluster.key");
  std::string receiver_ = "127.0.0.1:" + std::to_string(free_port());
};

TEST_F(PcmkAgent, ItsActionsAnswerWithOcfExitCodes) {
  const CmdResult md = act("a", "meta-data");
  EXPECT_EQ(md.status, kOk);
  for (const char* action : {"\"start\"", "\"stop\"", "\"monitor\"", "\"migrate_to\"", "\"migrate_from\"",
                             "\"validate-all\"", "\"meta-data\""})
    EXPECT_NE(md.out.find(std::string("<action name=") + action), std::string::npos) << action;
  EXPECT_EQ(act("a", "monitor").status, kNotRunning) << "a probe before any start";
  EXPECT_EQ(act("a", "stop").status, kOk) << "stopping what is stopped succeeds";
  const CmdResult bad = act("a", "validate-all", {"OCF_RESKEY_vcpus=two"});
  EXPECT_EQ(bad.status, kNotConfigured);
  EXPECT_NE(bad.err.find("ocf-exit-reason:vcpus must be a positive number"), std::string::npos) << bad.err;
  EXPECT_EQ(act("a", "validate-all").status, kOk) << act("a", "validate-all").err;
  EXPECT_EQ(act("a", "reload-everything").status, kUnimplemented);

  const CmdResult start = act("a", "start");
  ASSERT_EQ(start.status, kOk) << start.err;
  EXPECT_EQ(act("a", "start").status, kOk) << "a second start of a running VM succeeds";
  EXPECT_EQ(act("a", "monitor", {"OCF_RESKEY_CRM_meta_interval=10000"}).status, kOk);
  ASSERT_TRUE(wait_heartbeats("a", 2, 30s)) << slurp(console("a"));
  EXPECT_EQ(act("a", "stop").status, kOk);
  EXPECT_EQ(act("a", "monitor").status, kNotRunning);
}

TEST_F(PcmkAgent, AVmThatEndedByItselfFailsItsMonitorWithAReason) {
  ASSERT_EQ(act("a", "start").status, kOk);
  const std::string pid = slurp(dir_.file("a") + "/v.pid");
  ASSERT_EQ(run_cmd({"kill", "-KILL", pid.substr(0, pid.find('\n'))}).status, 0);
  std::this_thread::sleep_for(300ms);
  const CmdResult m = act("a", "monitor", {"OCF_RESKEY_CRM_meta_interval=10000"});
  EXPECT_EQ(m.status, kErrGeneric);
  EXPECT_NE(m.err.find("ocf-exit-reason:the VMM ended by itself"), std::string::npos) << m.err;
  EXPECT_EQ(act("a", "stop").status, kOk);
  EXPECT_EQ(act("a", "monitor").status, kNotRunning) << "cleaned up by the stop";
}

// The lease, not Pacemaker, keeps a second copy off the disk: a start on another host while the
// first runs is refused naming the holder, and succeeds once the first has stopped.
TEST_F(PcmkAgent, ASecondStartOfTheDiskIsRefusedWhileItsHolderRuns) {
  ASSERT_EQ(act("a", "start").status, kOk);
  const CmdResult second = act("b", "start", {"OCF_RESKEY_CRM_meta_timeout=4000"});
  EXPECT_EQ(second.status, kErrGeneric);
  EXPECT_NE(second.err.find("ocf-exit-reason:minihv run ended"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("held by"), std::string::npos) << second.err;
  EXPECT_EQ(act("b", "monitor").status, kNotRunning);
  EXPECT_EQ(act("a", "monitor").status, kOk) << "the holder runs on";
  ASSERT_EQ(act("a", "stop").status, kOk);
  const CmdResult third = act("b", "start");
  EXPECT_EQ(third.status, kOk) << third.err;
}

// Pacemaker's live move: migrate_to on the source (through the target's receiver), migrate_from
// on the target, stop on the source. The guest's heartbeats go on from where they were on the
// target, its disk records continue, it booted once.
TEST_F(PcmkAgent, MigrateToAndFromMoveTheVmLiveThroughTheTargetsReceiver) {
  VmProcess receiver({"receiver", "serve", "--listen", receiver_, "--state-dir", dir_.file("b"), "--key", key_});
  ASSERT_TRUE(receiver.wait_stderr("receiver serving on", 10s)) << receiver.stderr_text();
  ASSERT_EQ(act("a", "start").status, kOk);
  ASSERT_TRUE(wait_heartbeats("a", 3, 30s)) << slurp(console("a"));
  const long before = heartbeats(console("a")).back().seq;

  const CmdResult to = act("a", "migrate_to", {"OCF_RESKEY_verify=true"});
  ASSERT_EQ(to.status, kOk) << to.err << "\n" << slurp(dir_.file("a") + "/v.log");
  EXPECT_EQ(act("b", "migrate_from").status, kOk);
  EXPECT_EQ(act("a", "stop").status, kOk);
  EXPECT_EQ(act("a", "monitor").status, kNotRunning) << "the source's VMM ended with the move";
  EXPECT_EQ(act("b", "monitor", {"OCF_RESKEY_CRM_meta_interval=10000"}).status, kOk);
  EXPECT_NE(slurp(dir_.file("a") + "/v.log").find("\"verified\":true"), std::string::npos)
      << "verify=true makes the move compare memory digests";

  ASSERT_TRUE(wait_heartbeats("b", 3, 30s)) << slurp(console("b"));
  const auto after = heartbeats(console("b"));
  EXPECT_GT(after.front().seq, before) << "the target's guest goes on, it did not start again";
  for (const auto& hb : after) EXPECT_EQ(hb.errs, 0) << "the guest found its memory and disk intact";
  EXPECT_EQ(count(slurp(console("b")), "minihv-testguest"), 0u) << "no boot banner on the target";
  EXPECT_EQ(act("b", "stop").status, kOk);
}

// A move that cannot happen leaves the VM running where it was (and says why).
TEST_F(PcmkAgent, AFailedMigrateToLeavesTheVmRunningOnTheSource) {
  ASSERT_EQ(act("a", "start").status, kOk);
  // No receiver serves b's address.
  const CmdResult to = act("a", "migrate_to");
  EXPECT_EQ(to.status, kErrGeneric);
  EXPECT_NE(to.err.find("ocf-exit-reason:b's receiver"), std::string::npos) << to.err;
  EXPECT_EQ(act("a", "monitor").status, kOk);
  const CmdResult unknown = act("a", "migrate_to", {"OCF_RESKEY_CRM_meta_migrate_target=c"});
  EXPECT_EQ(unknown.status, kNotConfigured);
  EXPECT_NE(unknown.err.find("no receiver for node c"), std::string::npos) << unknown.err;
}

TEST(PcmkReceiver, RefusesPeersWithoutTheKeyAndWhatItWillNotStart) {
  TempDir dir;
  const std::string vol = dir.file("vol.img"), key = dir.file("k"), other = dir.file("other");
  ASSERT_EQ(run_minihv({"volume", "format", vol, "--cluster", "p", "--size", "64M"}).rc, 0);
  ASSERT_EQ(run_minihv({"volume", "disk", "create", vol, "d0", "--size", "8M"}).rc, 0);
  ASSERT_EQ(run_minihv({"cluster", "init-key", "--key", key}).rc, 0);
  ASSERT_EQ(run_minihv({"cluster", "init-key", "--key", other}).rc, 0);
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  VmProcess receiver({"receiver", "serve", "--listen", addr, "--state-dir", dir.file("s"), "--key", key});
  ASSERT_TRUE(receiver.wait_stderr("receiver serving on", 10s)) << receiver.stderr_text();
  auto prepare = [&](const std::string& k, const std::string& name, const std::string& disk) {
    return run_minihv({"receiver", "prepare", "--to", addr, "--key", k, "--name", name, "--disk", disk,
                       "--move-key", dir.file("mk-" + name)});
  };
  const MinihvRun stranger = prepare(other, "v", vol + ":d0");
  EXPECT_EQ(stranger.rc, 1);
  EXPECT_NE(stranger.err.find("does not hold"), std::string::npos) << stranger.err;
  const MinihvRun raw = prepare(key, "v", dir.file("some.img"));
  EXPECT_EQ(raw.rc, 2);
  EXPECT_NE(raw.err.find("is not VOLUME:DISK"), std::string::npos) << raw.err;
  const MinihvRun name = prepare(key, "../etc", vol + ":d0");
  EXPECT_EQ(name.rc, 2);
  EXPECT_NE(name.err.find("name must be"), std::string::npos) << name.err;

  // A good one: an incoming VMM waits; a cancel ends it; a second prepare replaces a stale one.
  const MinihvRun ok = prepare(key, "v", vol + ":d0");
  ASSERT_EQ(ok.rc, 0) << ok.err;
  EXPECT_NE(ok.out.find("127.0.0.1:"), std::string::npos) << ok.out;
  const MinihvRun again = prepare(key, "v", vol + ":d0");
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_NE(again.out, ok.out) << "a new incoming VMM, on a port of its own";
  EXPECT_EQ(run_minihv({"receiver", "cancel", "--to", addr, "--key", key, "--name", "v"}).rc, 0);
  const auto st = run_minihv({"vm", "status", "--api", dir.file("s") + "/v.sock"});
  EXPECT_NE(st.rc, 0) << "the cancelled VMM is gone: " << st.out;
}

}  // namespace
}  // namespace minihv::test
