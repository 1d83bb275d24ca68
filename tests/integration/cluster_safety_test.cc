// What a refused or failing cluster command must not do (issue 13, "safety first"): change the
// configuration, remove what something live depends on, take a VM that cannot run, or report a
// VM running before it has shown it. Real `minihv node` daemons on loopback, the real CLI.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/harness/cluster_lab.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// What the configuration says about the nodes (not their liveness, which the test changes).
json config_nodes(ClusterLab& c, unsigned via) {
  auto st = c.status(via);
  if (!st) return nullptr;
  json out = json::array();
  for (const auto& n : (*st)["nodes"])
    out.push_back({{"name", n["name"]}, {"host_id", n["host_id"]}, {"listen", n["listen"]},
                   {"migration_networks", n["migration_networks"]}, {"paused", n["paused"]}});
  return out;
}

json find_vm(const json& st, const std::string& name) {
  for (const auto& v : st["vms"])
    if (v.value("name", "") == name) return v;
  return json::object();
}

std::string port_after(const std::string& address, int plus) {
  const auto colon = address.rfind(':');
  return address.substr(0, colon + 1) + std::to_string(std::stoi(address.substr(colon + 1)) + plus);
}

// First heartbeat sequence number in a console file (-1: none).
long first_seq(const std::string& console) {
  const ConsoleScan s = scan_consoles({console});
  return s.seqs.empty() ? -1 : s.seqs.front();
}

TEST(ClusterSafety, AFailedNodeStartLeavesTheConfigurationExactlyAsItWas) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  const json before = config_nodes(c, 0);
  ASSERT_EQ(before.size(), 2u);

  // n1 runs: a second n1 on another port is refused, and n1's address stays what it was.
  const std::string other_port = port_after(c.address(1), 50);
  auto twin = c.minihv(c.with_trust({"node", "--name", "n1", "--volume", c.volume(), "--listen", other_port,
                                      "--state-dir", c.state_dir(1) + "-twin"}));
  EXPECT_EQ(twin.status, 2) << twin.err;
  EXPECT_EQ(config_nodes(c, 0), before) << "a refused node start rewrote the configuration";

  // A new node on a port in use fails (exit 1) and leaves no node behind.
  auto busy = c.minihv(c.with_trust({"node", "--name", "c", "--volume", c.volume(), "--listen", c.address(0),
                                      "--state-dir", c.state_dir(0) + "-c"}));
  EXPECT_EQ(busy.status, 1) << busy.err;
  EXPECT_EQ(busy.err.rfind("minihv: error: ", 0), 0u) << busy.err;
  EXPECT_EQ(config_nodes(c, 0), before) << "a node that never started is in the configuration";
  // And an existing node restarted on a port in use keeps its old address.
  c.node(1).kill(SIGKILL);
  ASSERT_TRUE(c.wait_node_exit(1, 5s));
  auto moved = c.minihv(c.with_trust({"node", "--name", "n1", "--volume", c.volume(), "--listen", c.address(0),
                                       "--state-dir", c.state_dir(1)}));
  EXPECT_EQ(moved.status, 1) << moved.err;
  EXPECT_EQ(config_nodes(c, 0), before);
}

TEST(ClusterSafety, NodeRmRemovesOnlyANodeThatIsGone) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  auto alive = c.cli(0, {"node", "rm", "n1"});
  EXPECT_EQ(alive.status, 1) << alive.out << alive.err;
  EXPECT_NE(alive.err.find("n1 is alive"), std::string::npos) << alive.err;
  auto self = c.cli(0, {"node", "rm", "n0"});
  EXPECT_EQ(self.status, 1) << self.err;
  auto nobody = c.cli(0, {"node", "rm", "zz"});
  EXPECT_EQ(nobody.status, 2) << nobody.err;

  c.node(1).kill(SIGKILL);
  ASSERT_TRUE(c.wait_status(0, 10s, [](const json& st) {
    for (const auto& n : st["nodes"])
      if (n["name"] == "n1") return n["state"] == "dead";
    return false;
  }));
  auto gone = c.cli(0, {"node", "rm", "n1"});
  EXPECT_EQ(gone.status, 0) << gone.out << gone.err;
  auto st = c.status(0);
  ASSERT_TRUE(st);
  ASSERT_EQ((*st)["nodes"].size(), 1u) << st->dump();
  EXPECT_EQ((*st)["nodes"][0]["name"], "n0");
}

TEST(ClusterSafety, VmRmOfARunningVmIsRefusedNamingItsNode) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  auto add = c.add_vm("x", "idle", {"--preferred", "n1"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  auto rm = c.cli(0, {"vm", "rm", "x"});
  EXPECT_EQ(rm.status, 1) << rm.err;
  EXPECT_NE(rm.err.find("runs on node n1"), std::string::npos) << rm.err;
  EXPECT_EQ(ClusterLab::vm_node(*c.status(0), "x"), "n1");
  ASSERT_EQ(c.cli(0, {"vm", "stop", "x"}).status, 0);
  EXPECT_EQ(c.cli(0, {"vm", "rm", "x"}).status, 0);
}

TEST(ClusterSafety, DrillAsksForConfirmationAndRefusesWithoutATerminalOrYes) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  auto piped = c.cli(0, {"drill", "--kill", "n1"});  // stdin is /dev/null
  EXPECT_EQ(piped.status, 2) << piped.err;
  EXPECT_NE(piped.err.find("--yes"), std::string::npos) << piped.err;
  VmProcess asked(VmProcess::WithTerminal{}, {"cluster", "--node", c.address(0), "--key", c.key(), "drill", "--kill", "n1"});
  ASSERT_TRUE(asked.wait_stderr("kill node n1", 10s)) << asked.stdout_text() << asked.stderr_text();
  asked.type("n\n");
  EXPECT_EQ(asked.wait_exit(10s).value_or(-1), 1) << asked.stderr_text();
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(c.wait_node_exit(1, 0ms)) << "node n1 was killed without a yes";
  EXPECT_TRUE(c.wait_all_up(0, 5s));
}

TEST(ClusterSafety, VmAddRefusesWhatCannotRunAndWritesNothing) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--mem", "99T"}, "memory"},
      {{"--cpu-model", "bogus"}, "bogus"},
      {{"--initrd", "/nonexistent/initrd"}, "/nonexistent/initrd"},
      {{"--disk", "nosuchdisk"}, "nosuchdisk"},
  };
  for (const auto& [extra, says] : bad) {
    std::vector<std::string> args = {"vm", "add", "v", "--kernel", testguest_elf()};
    args.insert(args.end(), extra.begin(), extra.end());
    if (extra[0] != "--mem") args.insert(args.end(), {"--mem", "64M"});
    auto r = c.cli(0, args);
    EXPECT_EQ(r.status, 2) << extra[0] << ": " << r.out << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("done"), std::string::npos) << r.out;
  }
  auto st = c.status(1);
  ASSERT_TRUE(st);
  EXPECT_TRUE((*st)["vms"].empty()) << st->dump();
}

TEST(ClusterSafety, VmStartWaitsForTheFirstHeartbeatOrTheFirstFailure) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  auto good = c.add_vm("good", "idle", {"--preferred", "n0"});
  ASSERT_EQ(good.status, 0) << good.out << good.err;
  EXPECT_GE(ClusterLab::vm_local(*c.status(0), "good").value("heartbeats", 0), 1) << "it ran before a heartbeat";

  const std::string junk = c.images_dir() + "/junk.elf";  // (nodes boot only from their --images)
  std::ofstream(junk) << "this is not a kernel\n";
  auto bad = c.cli(0, {"vm", "add", "bad", "--kernel", junk, "--mem", "64M", "--preferred", "n1", "--start"});
  EXPECT_EQ(bad.status, 1) << bad.out << bad.err;
  EXPECT_EQ(bad.out.find("running on"), std::string::npos) << bad.out;
  EXPECT_NE(bad.err.find("on node n1"), std::string::npos) << bad.err;
  // Every node shows why, not only the node it failed on.
  for (unsigned via : {0u, 1u}) {
    auto st = c.wait_status(via, 2s, [](const json& s) { return find_vm(s, "bad").contains("last_failure"); });
    ASSERT_TRUE(st) << "node n" << via << " does not show the failure";
    const json f = find_vm(*st, "bad").value("last_failure", json::object());
    EXPECT_EQ(f.value("node", ""), "n1") << st->dump();
    EXPECT_FALSE(f.value("reason", "").empty()) << st->dump();
    EXPECT_GT(f.value("unix_ms", int64_t{0}), 0) << st->dump();
    auto text = c.cli(via, {"status"});
    EXPECT_NE(text.out.find("last failure"), std::string::npos) << text.out;
  }
}

// A disk write that stays in the kernel past the deadline it was handed over under (the fence's
// `until` then) gets its VM killed by the node at once: its storage is stuck, and a write that
// lands late could land after another node took the disk over. The test hook holds the first
// write of the VM's first instance 3 s (past `dead`) between showing the node its deadline and
// handing it to the kernel, as a stalled io-wq would; the kill must come first, so that write
// never reaches the disk. The node restarts the VM, whose disk workload then finds every
// acknowledged record and no corrupt one.
TEST(ClusterSafety, AVmWhoseDiskWriteOutlivesItsDeadlineIsKilledAndComesBackWithItsDisk) {
  ClusterLab c(1);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  const std::string marker = c.state_dir(0) + "-stalled";
  c.node(0).kill(SIGKILL);
  ASSERT_TRUE(c.wait_node_exit(0, 5s));
  c.start_node(0, {"MINIHV_TEST_DISK_STALL=3000:" + marker});
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  ASSERT_EQ(c.minihv({"volume", "disk", "create", c.volume(), "d1", "--size", "16M"}).status, 0);
  // The first instance may be killed before its first heartbeat; either way the node restarts it.
  (void)c.add_vm("db", "disk", {"--disk", "d1"});
  auto st = c.wait_status(0, 40s, [](const json& s) {
    const json l = ClusterLab::vm_local(s, "db");
    return l.value("late_write_kills", 0) >= 1 && l.value("restarts", 0) >= 1 && l.value("heartbeats", 0) >= 2 &&
           l.value("disk_resume", -1L) >= 0;
  });
  ASSERT_TRUE(st) << "the VM was not killed for its late write and restarted\n" << c.node(0).stderr_text();
  EXPECT_TRUE(std::filesystem::exists(marker)) << "the hook never held a write";
  EXPECT_NE(c.node(0).stderr_text().find("past its deadline (the fence it was handed over under): killing the VM"),
            std::string::npos)
      << c.node(0).stderr_text();
  const json l = ClusterLab::vm_local(*st, "db");
  EXPECT_EQ(l.value("late_write_kills", 0), 1) << "the restarted instance was killed too: " << st->dump();
  EXPECT_EQ(l.value("errs", -1L), 0);
  EXPECT_EQ(l.value("corrupt", -1L), 0);
  const ConsoleScan scan = scan_consoles({c.state_dir(0) + "/db.console"});
  EXPECT_EQ(scan.corrupt, 0);
  EXPECT_EQ(scan.max_errs, 0);
}

TEST(ClusterSafety, VmSetChangesAStoppedVmWithTheChecksOfAdd) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  ASSERT_EQ(c.cli(0, {"vm", "add", "s", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "64M"}).status, 0);
  auto set = c.cli(1, {"vm", "set", "s", "--mem", "96M", "--cpus", "2", "--preferred", "n1", "--cpu-model", "compat"});
  ASSERT_EQ(set.status, 0) << set.out << set.err;
  json v = find_vm(*c.status(0), "s");
  EXPECT_EQ(v.value("mem_bytes", 0ull), 96ull << 20);
  EXPECT_EQ(v.value("cpus", 0u), 2u);
  EXPECT_EQ(v.value("cpu_model", ""), "compat");
  EXPECT_EQ(v["preferred_owners"], json::array({"n1"}));
  EXPECT_EQ(c.cli(0, {"vm", "set", "s", "--mem", "99T"}).status, 2);
  EXPECT_EQ(c.cli(0, {"vm", "set", "s", "--cpu-model", "bogus"}).status, 2);
  EXPECT_EQ(c.cli(0, {"vm", "set", "s", "--preferred", "nobody"}).status, 2);
  EXPECT_EQ(find_vm(*c.status(0), "s").value("mem_bytes", 0ull), 96ull << 20) << "a refused set changed it";

  auto start = c.cli(0, {"vm", "start", "s"});
  ASSERT_EQ(start.status, 0) << start.err;
  EXPECT_NE(start.out.find("running on n1"), std::string::npos) << start.out;
  auto running = c.cli(0, {"vm", "set", "s", "--mem", "64M"});
  EXPECT_EQ(running.status, 1) << running.err;
  EXPECT_NE(running.err.find("n1"), std::string::npos) << running.err;
}

TEST(ClusterSafety, SigtermDrainsANodeLiveThenItExitsZero) {
  ClusterLab c(2);
  ASSERT_TRUE(c.wait_all_up(0, 20s)) << c.node(0).stderr_text();
  auto add = c.add_vm("v", "idle", {"--preferred", "n0"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  ASSERT_TRUE(c.wait_status(0, 10s, [](const json& s) { return ClusterLab::vm_local(s, "v").value("heartbeats", 0) >= 3; }));
  ::kill(c.node(0).pid(), SIGTERM);
  auto code = c.wait_node_exit(0, 60s);
  ASSERT_TRUE(code) << "node n0 did not stop after SIGTERM";
  EXPECT_EQ(*code, 0) << c.node(0).stderr_text();
  auto st = c.wait_status(1, 10s, [](const json& s) {
    return ClusterLab::vm_node(s, "v") == "n1" && ClusterLab::vm_local(s, "v").value("heartbeats", 0) >= 2;
  });
  ASSERT_TRUE(st) << c.node(1).stderr_text();
  // Moved live: the guest's heartbeats go on from where they were, it did not boot again.
  const long first_on_n1 = first_seq(c.state_dir(1) + "/v.console");
  EXPECT_GT(first_on_n1, 3) << "the VM was restarted on n1, not moved";
  EXPECT_NE(c.node(0).stderr_text().find("drain"), std::string::npos) << c.node(0).stderr_text();
}

}  // namespace
}  // namespace minihv::test
