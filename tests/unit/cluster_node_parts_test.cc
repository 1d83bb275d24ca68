// The parts of a cluster node that need no KVM and no other process: the configuration on the
// volume, the lease observer and the takeover it seeds, placement, and the cross-process fence.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <climits>

#include "blockdev/fence.h"
#include "cluster/config.h"
#include "cluster/observer.h"
#include "cluster/placement.h"
#include "tests/unit/blockdev_test_util.h"

namespace minihv::cluster {
namespace {

using blockdev::testing::MemVolume;
using namespace std::chrono_literals;

blockdev::LeaseSlot vm_slot(MemVolume& m, uint32_t index = 0) {
  return *m.vol->vm_slot(kFirstVmSlot + index, "vm v" + std::to_string(index));
}

TEST(ClusterConfig, RoundTripsThroughTheVolumeUnderTheAdminLease) {
  MemVolume m;
  auto empty = read_config(*m.vol);
  ASSERT_TRUE(empty) << empty.message();
  EXPECT_TRUE(empty->nodes.empty());
  Status s = update_config(*m.vol, "node:a", [](ClusterConfig& c) {
    c.nodes.push_back({"a", 1, "127.0.0.1:7700", {"10.0.1.1"}, 5, false, nullptr});
    VmSpec v;
    v.name = "web";
    v.kernel = "/k";
    v.preferred_owners = {"a"};
    v.running = true;
    c.vms.push_back(v);
    return Status::ok();
  });
  ASSERT_TRUE(s) << s.message();
  auto c = read_config(*m.vol);
  ASSERT_TRUE(c) << c.message();
  ASSERT_EQ(c->nodes.size(), 1u);
  EXPECT_EQ(c->nodes[0].migration_networks, std::vector<std::string>{"10.0.1.1"});
  ASSERT_NE(c->vm("web"), nullptr);
  EXPECT_TRUE(c->vm("web")->running);
  EXPECT_EQ(c->vm("web")->cpu_model, "baseline");
  EXPECT_EQ(c->vm_slot(*c->vm("web")), kFirstVmSlot);
  // A refused edit writes nothing.
  Status no = update_config(*m.vol, "node:a", [](ClusterConfig& cc) {
    cc.vms.clear();
    return Status::invalid("no");
  });
  EXPECT_FALSE(no);
  EXPECT_EQ(read_config(*m.vol)->vms.size(), 1u);
}

TEST(ClusterConfig, AVmsLastFailureIsKeptForEveryNodeToRead) {
  VmSpec v;
  v.name = "web";
  v.index = 3;
  v.last_failure = VmFailure{"ended with status 2", "b", 1234, 7};
  ClusterConfig c;
  c.vms.push_back(v);
  auto back = config_from_json(to_json(c));
  ASSERT_TRUE(back) << back.message();
  const auto& f = back->vm("web")->last_failure;
  ASSERT_TRUE(f);
  EXPECT_EQ(f->reason, "ended with status 2");
  EXPECT_EQ(f->node, "b");
  EXPECT_EQ(f->unix_ms, 1234);
  EXPECT_EQ(f->generation, 7);
  c.vms[0].last_failure.reset();
  EXPECT_FALSE(to_json(c)["vms"][0].contains("last_failure")) << "no failure, no field";
}

TEST(ClusterConfig, RejectsDuplicateHostIdsAndForeignFormats) {
  auto dup = config_from_json({{"format", "minihv-cluster/1"},
                               {"nodes", {{{"name", "a"}, {"host_id", 1}}, {{"name", "b"}, {"host_id", 1}}}},
                               {"vms", nlohmann::json::array()}});
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.message().find("duplicate host id"), std::string::npos) << dup.message();
  auto other = config_from_json({{"format", "someone-else/9"}});
  ASSERT_FALSE(other);
  EXPECT_NE(other.message().find("someone-else/9"), std::string::npos);
  auto junk = config_from_json({{"format", "minihv-cluster/1"}, {"nodes", 5}, {"vms", nlohmann::json::array()}});
  EXPECT_FALSE(junk);
}

TEST(ClusterObserver, ALiveHolderStaysAliveAndADeadOneIsDeadAfterTheDeadTimeout) {
  MemVolume m;
  LeaseObserver obs(*m.vol, m.timings().dead);
  const auto slot = vm_slot(m);
  ASSERT_TRUE(obs.observe(slot));
  EXPECT_EQ(obs.liveness(slot.offset), Liveness::kFree) << "never held";
  auto held = m.vol->acquire(slot, node_owner("a"));
  ASSERT_TRUE(held);
  for (int i = 0; i < 20; ++i) {  // renewals every 200 ms: alive throughout
    m.clock.advance(m.timings().renew);
    ASSERT_TRUE((*held)->renew());
    ASSERT_TRUE(obs.observe(slot));
    EXPECT_EQ(obs.liveness(slot.offset), Liveness::kAlive);
  }
  EXPECT_EQ(owner_node(obs.view(slot.offset)->rec), "a");
  // The holder dies: alive until the record has stood still for `dead`, then dead.
  m.clock.advance(m.timings().dead - 1ms);
  ASSERT_TRUE(obs.observe(slot));
  EXPECT_EQ(obs.liveness(slot.offset), Liveness::kAlive);
  EXPECT_FALSE(obs.quiet(slot.offset));
  m.clock.advance(1ms);
  ASSERT_TRUE(obs.observe(slot));
  EXPECT_EQ(obs.liveness(slot.offset), Liveness::kDead);
  EXPECT_TRUE(obs.quiet(slot.offset));
}

TEST(ClusterObserver, APriorObservationTakesADeadHolderOverWithoutWatchingAgain) {
  MemVolume m;
  LeaseObserver obs(*m.vol, m.timings().dead);
  const auto slot = vm_slot(m);
  auto held = m.vol->acquire(slot, node_owner("a"));
  ASSERT_TRUE(held);
  ASSERT_TRUE(obs.observe(slot));
  m.clock.advance(m.timings().dead);  // a is gone; the observer has watched for `dead`
  ASSERT_TRUE(obs.observe(slot));
  const blockdev::Nanos t0 = m.clock.now();
  auto taken = m.vol->acquire(slot, node_owner("b"), obs.acquire_options(slot.offset));
  ASSERT_TRUE(taken) << taken.message();
  EXPECT_EQ(m.clock.now() - t0, blockdev::Nanos(m.timings().acquire_delay())) << "only the claim's settle delay";
  EXPECT_FALSE((*held)->renew()) << "a, waking, finds it gone";
}

TEST(ClusterObserver, APriorObservationOfOtherBytesCountsForNothing) {
  MemVolume m;
  LeaseObserver obs(*m.vol, m.timings().dead);
  const auto slot = vm_slot(m);
  auto held = m.vol->acquire(slot, node_owner("a"));
  ASSERT_TRUE(held);
  ASSERT_TRUE(obs.observe(slot));
  m.clock.advance(m.timings().renew);
  ASSERT_TRUE((*held)->renew());  // alive after all: the record changed since the observation
  m.clock.advance(m.timings().dead);  // (and then it dies)
  const blockdev::Nanos t0 = m.clock.now();
  auto taken = m.vol->acquire(slot, node_owner("b"), obs.acquire_options(slot.offset));
  ASSERT_TRUE(taken) << taken.message();
  EXPECT_GE(m.clock.now() - t0, blockdev::Nanos(m.timings().dead)) << "a stale observation shortened the watch";
}

TEST(ClusterPlacement, PreferredOwnersFirstThenTheLeastLoadedThenTheLowestHostId) {
  VmSpec v;
  v.name = "v";
  v.mem_bytes = 1 << 20;
  std::vector<NodeLoad> nodes = {{"a", 1, 2, 0}, {"b", 2, 1, 0}, {"c", 3, 1, 0}};
  EXPECT_EQ(choose_node(v, nodes), "b") << "fewest VMs, then lowest host id";
  v.preferred_owners = {"x", "c"};
  EXPECT_EQ(choose_node(v, nodes), "c") << "the first preferred owner that is a candidate";
  EXPECT_EQ(choose_node(v, {}), std::nullopt);
  // A dead node's four VMs spread over two survivors.
  VmSpec w;
  w.mem_bytes = 1 << 20;
  std::vector<const VmSpec*> four(4, &w);
  auto placed = place_all(four, {{"a", 1, 0, 0}, {"b", 2, 0, 0}});
  EXPECT_EQ(std::count(placed.begin(), placed.end(), std::optional<std::string>("a")), 2);
  EXPECT_EQ(std::count(placed.begin(), placed.end(), std::optional<std::string>("b")), 2);
}

TEST(ClusterFence, AChildSeesTheHoldersValidityAndItsRevocation) {
  auto fence = blockdev::Fence::create();
  ASSERT_TRUE(fence) << fence.message();
  auto& clock = blockdev::system_clock();
  EXPECT_FALSE((*fence)->opened());
  EXPECT_FALSE((*fence)->may_write(clock));
  (*fence)->extend_to(clock.now() + 10s);
  // Another process maps the same page by fd, as `minihv run --fence-fd` does.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    auto child = blockdev::Fence::attach(dup((*fence)->fd()));
    if (!child || !(*child)->may_write(clock)) _exit(1);
    (void)!write(ready[1], "r", 1);  // attached and allowed: now the holder revokes
    while ((*child)->may_write(clock)) usleep(1000);  // until the holder revokes it
    _exit(0);
  }
  close(ready[1]);
  char byte = 0;
  (void)!read(ready[0], &byte, 1);  // EOF instead if the child failed first
  close(ready[0]);
  (*fence)->revoke();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(blockdev::Fence::attach(open("/dev/null", O_RDONLY)));
}

// The VM's side of its fence is read-only: an escaped guest cannot keep itself writing after its
// node has stopped renewing. Every way to write the page from the child's fd is refused.
TEST(ClusterFence, TheVmsSideCannotWriteTheFence) {
  auto fence = blockdev::Fence::create();
  ASSERT_TRUE(fence) << fence.message();
  (*fence)->extend_to(blockdev::system_clock().now() + 10s);
  const int fd = dup((*fence)->fd());
  auto child = blockdev::Fence::attach(fd);
  ASSERT_TRUE(child) << child.message();
  errno = 0;
  EXPECT_EQ(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, (*child)->fd(), 0), MAP_FAILED);
  EXPECT_EQ(errno, EPERM) << "mapped writable";
  const int64_t forever = INT64_MAX;
  EXPECT_EQ(pwrite((*child)->fd(), &forever, sizeof forever, 0), -1) << "write(2) into the page";
  EXPECT_EQ(ftruncate((*child)->fd(), 0), -1) << "resized";
  EXPECT_EQ(fcntl((*child)->fd(), F_ADD_SEALS, 0), -1) << "seals can be changed";
  // Through /proc, as an escaped process would try: a new open file is sealed just the same.
  UniqueFd again(open(("/proc/self/fd/" + std::to_string((*child)->fd())).c_str(), O_RDWR));
  ASSERT_TRUE(again.valid());
  EXPECT_EQ(pwrite(again.get(), &forever, sizeof forever, 0), -1);
  EXPECT_EQ(mmap(nullptr, 4096, PROT_WRITE, MAP_SHARED, again.get(), 0), MAP_FAILED);
  // The holder still writes through its own mapping, and the child sees it.
  (*fence)->revoke();
  EXPECT_FALSE((*child)->may_write(blockdev::system_clock()));
  // An unsealed page (not from a node of this version) is refused.
  UniqueFd plain(memfd_create("plain", MFD_CLOEXEC));
  ASSERT_EQ(ftruncate(plain.get(), 4096), 0);
  auto refused = blockdev::Fence::attach(plain.release());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.message().find("not sealed"), std::string::npos) << refused.message();
}

}  // namespace
}  // namespace minihv::cluster
