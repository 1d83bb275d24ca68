// A cluster VM with a NIC (`cluster vm add --net bridge=NAME`): the node's VM process makes its tap
// on that bridge with the MAC the cluster fixed at `vm add`, a live move keeps the MAC and builds
// the tap on the destination's bridge, `validate` names a node without the bridge, and `vm add`
// refuses a bridge some node lacks; a client's TCP conversation with the guest goes on across a move.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/ether.h"
#include "tests/harness/cluster_lab.h"
#include "tests/harness/echo_probe.h"
#include "tests/harness/netns.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr const char* kBridge = "vmbr";

// The bridge ports (interface names) of `bridge` in namespace `ns`.
std::string ports_of(const std::string& ns, const std::string& bridge) {
  return run_cmd({"ip", "-n", ns, "-o", "link", "show", "master", bridge}).out;
}

json nic_of(const json& status, const std::string& vm) {
  const std::string api = ClusterLab::vm_local(status, vm).value("api", "");
  auto s = api_call(api, {{"cmd", "stats"}});
  return s && !(*s)["nics"].empty() ? (*s)["nics"][0] : json::object();
}

class ClusterNet : public ::testing::Test {
protected:
  void SetUp() override {
    for (unsigned i = 0; i < 3; ++i) {
      ASSERT_EQ(run_cmd({"ip", "-n", lab.ns(i), "link", "add", kBridge, "type", "bridge"}).status, 0);
      ASSERT_EQ(run_cmd({"ip", "-n", lab.ns(i), "link", "set", kBridge, "up"}).status, 0);
    }
    ASSERT_TRUE(cluster.wait_all_up(0, 20s)) << cluster.node(0).stderr_text();
  }
  NetLab lab{3, 2};
  ClusterLab cluster{3, &lab};
};

TEST_F(ClusterNet, AVmsNicKeepsItsMacAndBridgeAcrossAMove) {
  auto add = cluster.add_vm("web", "idle", {"--net", std::string("bridge=") + kBridge, "--preferred", "n0"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  auto st = cluster.status(0);
  ASSERT_TRUE(st);
  const json before = nic_of(*st, "web");
  const std::string mac = before.value("mac", "");
  ASSERT_TRUE(parse_mac(mac)) << before.dump();
  EXPECT_NE(ports_of(lab.ns(0), kBridge).find(before.value("tap", "?")), std::string::npos)
      << "the VM's tap is a port of its bridge:\n" << ports_of(lab.ns(0), kBridge);

  auto mv = cluster.cli(1, {"move", "web", "--to", "n1"});
  ASSERT_EQ(mv.status, 0) << mv.out << mv.err;
  auto after_st = cluster.wait_status(1, 10s, [](const json& s) { return ClusterLab::vm_node(s, "web") == "n1"; });
  ASSERT_TRUE(after_st);
  const json after = nic_of(*after_st, "web");
  EXPECT_EQ(after.value("mac", ""), mac) << "a move keeps the MAC";
  EXPECT_NE(ports_of(lab.ns(1), kBridge).find(after.value("tap", "?")), std::string::npos) << ports_of(lab.ns(1), kBridge);
  // One RARP when the source's pause ended the last round, then 5 rounds once the guest runs (the
  // last 850 ms after the first); never more.
  EXPECT_TRUE(cluster.wait_status(1, 5s, [](const json& s) { return nic_of(s, "web").value("announcements", 0u) >= 6; }))
      << "the destination announces the guest (1 + 5 RARP frames)";
  std::this_thread::sleep_for(300ms);
  auto settled = cluster.wait_status(1, 5s, [](const json&) { return true; });
  ASSERT_TRUE(settled);
  EXPECT_EQ(nic_of(*settled, "web").value("announcements", 0u), 6u) << nic_of(*settled, "web").dump();
  // The source's tap went with its VM process.
  EXPECT_TRUE(cluster.wait_status(0, 10s, [&](const json&) {
    return ports_of(lab.ns(0), kBridge).find(before.value("tap", "?")) == std::string::npos;
  }));
}

// The bridges of nodes 0 and 1 joined by a veth, and a client namespace on node 0's: one LAN the
// guest stays on wherever it runs. Removed with the client namespace and the lab.
class ClusterLan {
public:
  explicit ClusterLan(const NetLab& lab)
      : client_("mhv" + std::to_string(getpid()) + "cl"),
        prefix_("10.197." + std::to_string(getpid() % 200) + ".") {
    must({"ip", "-n", lab.ns(0), "link", "add", "vj0", "type", "veth", "peer", "name", "vj1", "netns", lab.ns(1)});
    must({"ip", "-n", lab.ns(0), "link", "set", "vj0", "master", kBridge, "up"});
    must({"ip", "-n", lab.ns(1), "link", "set", "vj1", "master", kBridge, "up"});
    must({"ip", "netns", "add", client_});
    must({"ip", "-n", client_, "link", "set", "lo", "up"});
    must({"ip", "-n", lab.ns(0), "link", "add", "vcl", "type", "veth", "peer", "name", "eth0", "netns", client_});
    must({"ip", "-n", lab.ns(0), "link", "set", "vcl", "master", kBridge, "up"});
    must({"ip", "-n", client_, "addr", "add", prefix_ + "1/24", "dev", "eth0"});
    must({"ip", "-n", client_, "link", "set", "eth0", "up"});
  }
  ~ClusterLan() { (void)run_cmd({"ip", "netns", "del", client_}); }
  const std::string& client() const { return client_; }
  std::string guest() const { return prefix_ + "2"; }

private:
  static void must(const std::vector<std::string>& argv) {
    const CmdResult r = run_cmd(argv);
    if (r.status != 0) throw std::runtime_error(argv[0] + " " + argv[1] + " ...: " + r.err);
  }
  std::string client_, prefix_;
};

// `cluster move` of a guest a client talks TCP to every millisecond: no reset, every byte in order.
TEST_F(ClusterNet, ATcpConversationGoesOnAcrossAClusterMove) {
  ClusterLan net(lab);
  auto add = cluster.add_vm("web", "net ip=" + net.guest() + "/24",
                            {"--net", std::string("bridge=") + kBridge, "--preferred", "n0"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  std::string why;
  auto tcp = EchoProbe::start(EchoProbe::Kind::kTcp, net.client(), net.guest(), 7, std::chrono::milliseconds(1), 30s, why);
  ASSERT_TRUE(tcp) << why;
  const auto echoed_at_least = [&](uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (tcp->echoed() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    return tcp->echoed() >= n;
  };
  ASSERT_TRUE(echoed_at_least(300));
  tcp->mark();
  auto mv = cluster.cli(1, {"move", "web", "--to", "n1"});
  ASSERT_EQ(mv.status, 0) << mv.out << mv.err;
  ASSERT_TRUE(echoed_at_least(tcp->echoed() + 300)) << "the echo did not go on after the move";
  const EchoReport r = tcp->finish(5s);
  EXPECT_FALSE(r.reset) << r.error;
  EXPECT_EQ(r.bad, 0u) << r.error;
  EXPECT_EQ(r.echoed, r.sent) << r.error;
  std::printf("[ gaps ] TCP echo gap across the cluster move: %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(tcp->max_gap_since_mark()).count()));
}

TEST_F(ClusterNet, ANodeWithoutTheBridgeIsNamedAndTheVmRefused) {
  ASSERT_EQ(run_cmd({"ip", "-n", lab.ns(2), "link", "del", kBridge}).status, 0);
  auto add = cluster.cli(0, {"vm", "add", "db", "--kernel", testguest_elf(), "--cmdline", "idle", "--net",
                             std::string("bridge=") + kBridge});
  EXPECT_NE(add.status, 0) << add.out;
  EXPECT_NE((add.out + add.err).find("node n2 has no bridge vmbr"), std::string::npos) << add.out << add.err;
  auto bad = cluster.cli(0, {"vm", "add", "db", "--kernel", testguest_elf(), "--net", "bridge=vmbr,mac=01:00:5e:00:00:01"});
  EXPECT_EQ(bad.status, 2) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("multicast"), std::string::npos) << bad.err;
  // validate: a configured NIC's bridge missing on a node fails the check and names the node.
  ASSERT_EQ(run_cmd({"ip", "-n", lab.ns(2), "link", "add", kBridge, "type", "bridge"}).status, 0);
  ASSERT_EQ(cluster.add_vm("db", "idle", {"--net", std::string("bridge=") + kBridge}).status, 0);
  ASSERT_EQ(run_cmd({"ip", "-n", lab.ns(2), "link", "del", kBridge}).status, 0);
  auto v = cluster.cli(0, {"validate"});
  EXPECT_EQ(v.status, 1) << v.out;
  EXPECT_NE(v.out.find("has no bridge vmbr"), std::string::npos) << v.out;
}

}  // namespace
}  // namespace minihv::test
