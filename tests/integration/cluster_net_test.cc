// A cluster VM with a NIC (`cluster vm add --net bridge=NAME`): the node's VM process makes its tap
// on that bridge with the MAC the cluster fixed at `vm add`, a live move keeps the MAC and builds
// the tap on the destination's bridge, `validate` names a node without the bridge, and `vm add`
// refuses a bridge some node lacks.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/ether.h"
#include "tests/harness/cluster_lab.h"
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
  EXPECT_TRUE(cluster.wait_status(1, 5s, [](const json& s) { return nic_of(s, "web").value("announcements", 0u) == 5; }))
      << "the destination announces the guest (5 RARP rounds)";
  // The source's tap went with its VM process.
  EXPECT_TRUE(cluster.wait_status(0, 10s, [&](const json&) {
    return ports_of(lab.ns(0), kBridge).find(before.value("tap", "?")) == std::string::npos;
  }));
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
