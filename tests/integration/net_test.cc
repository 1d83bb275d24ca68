// virtio-net with the test guest's `net` workload on a lab LAN (tests/harness/guest_lan.h): ping, UDP
// and TCP echo from a client, two NICs, a tap deleted under a running VM, and a TCP conversation
// that goes on, byte-exact and without a lost datagram, while the VM moves between hosts, and a
// destination whose NICs differ refused before a page moves.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/harness/net_guest.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

class GuestNet : public ::testing::Test {
protected:
  void SetUp() override { lan_.add_tap(0, "vt0"); }
  GuestLan lan_{2};
  TempDir dir_;
  std::string api_ = dir_.file("a.sock");
};

TEST_F(GuestNet, AnswersPingUdpAndTcpEcho) {
  auto vm = net_guest(lan_, 0, "vt0", api_);
  ASSERT_TRUE(vm->wait_line("^NET mac=" + kGuestMac, kGuestUp)) << vm->stdout_text() << vm->stderr_text();
  auto tcp = echo_probe(lan_, EchoProbe::Kind::kTcp);
  ASSERT_TRUE(tcp);
  EXPECT_EQ(ping(lan_.hub(), lan_.guest_addr(0), 5, 20ms, 2s), 5u);
  auto udp = echo_probe(lan_, EchoProbe::Kind::kUdp);
  ASSERT_TRUE(udp);
  std::this_thread::sleep_for(2s);
  const EchoReport t = tcp->finish(5s), u = udp->finish(2s);
  expect_clean(t, "tcp");
  EXPECT_GT(t.sent, static_cast<uint64_t>(2s / echo_period() / 4)) << "the probe sends a message per period for 2 s and more";
  EXPECT_EQ(t.echoed, t.sent) << "every TCP message comes back";
  EXPECT_EQ(u.bad, 0u);
  EXPECT_GT(u.echoed, u.sent * 9 / 10) << "UDP may lose a few, not most: " << u.echoed << "/" << u.sent;
  const auto n = nic_stats(api_);
  EXPECT_GT(n.value("rx_frames", 0u), t.sent / 2) << n.dump();
  EXPECT_GT(n.value("tx_frames", 0u), t.sent / 2) << n.dump();
  EXPECT_EQ(n.value("errors", 1u), 0u) << n.dump();
  EXPECT_EQ(n.value("mac", ""), kGuestMac);
  EXPECT_TRUE(vm->lines_matching("errs=[1-9]|CORRUPT|PANIC").empty()) << vm->stdout_text();
}

TEST_F(GuestNet, TwoNicsEachGetTheirOwnTapAndMac) {
  lan_.add_tap(0, "vt1");
  auto vm = net_guest(lan_, 0, "vt0", api_, {"--net", "tap=vt1"});
  ASSERT_TRUE(vm->wait_line("^NET mac=" + kGuestMac, kGuestUp)) << vm->stdout_text() << vm->stderr_text();
  auto tcp = echo_probe(lan_, EchoProbe::Kind::kTcp);
  ASSERT_TRUE(tcp);
  std::this_thread::sleep_for(500ms);
  expect_clean(tcp->finish(5s), "tcp");
  const auto a = nic_stats(api_, 0), b = nic_stats(api_, 1);
  EXPECT_EQ(a.value("tap", ""), "vt0");
  EXPECT_EQ(b.value("tap", ""), "vt1");
  EXPECT_NE(b.value("mac", kGuestMac), kGuestMac) << "the second NIC has a MAC of its own";
  EXPECT_TRUE(b.value("link_up", false));
}

// The test guest's driver knows one pair (no MQ): on a two-pair NIC it finds the control queue at
// 2 and everything goes over pair 0, which is tap queue 0, the only one the tap hands frames to.
TEST_F(GuestNet, AOnePairDriverOnATwoPairNicUsesTheFirstPair) {
  lan_.add_tap(0, "vtq", /*multi_queue=*/true);
  auto vm = net_guest(lan_, 0, "vtq,queues=2", api_);
  ASSERT_TRUE(vm->wait_line("^NET mac=" + kGuestMac, kGuestUp)) << vm->stdout_text() << vm->stderr_text();
  auto tcp = echo_probe(lan_, EchoProbe::Kind::kTcp);
  ASSERT_TRUE(tcp);
  EXPECT_EQ(ping(lan_.hub(), lan_.guest_addr(0), 5, 20ms, 2s), 5u);
  std::this_thread::sleep_for(1s);
  const EchoReport t = tcp->finish(5s);
  expect_clean(t, "tcp");
  EXPECT_EQ(t.echoed, t.sent);
  const auto n = nic_stats(api_);
  EXPECT_EQ(n.value("tap", ""), "vtq");
  EXPECT_EQ(n.value("queue_pairs", 0u), 1u);
  EXPECT_EQ(n.value("errors", 1u), 0u) << n.dump();
}

// A two-pair NIC moves like a one-pair one (the destination has as many pairs): the conversation
// goes on, every datagram answered.
TEST_F(GuestNet, ATwoPairNicMovesAndTheConversationGoesOn) {
  std::vector<long> gaps;
  migrate_back_and_forth(lan_, dir_, 2, gaps, 2);
  EXPECT_EQ(gaps.size(), 2u);
}

TEST_F(GuestNet, TwoPairsOnATapWithoutMultiQueueAreRefusedNamingIt) {
  auto vm = net_guest(lan_, 0, "vt0,queues=2", api_);
  EXPECT_EQ(vm->wait_exit(10s), 2) << vm->stderr_text();
  EXPECT_NE(vm->stderr_text().find("tap vt0"), std::string::npos) << vm->stderr_text();
  EXPECT_NE(vm->stderr_text().find("without multi_queue"), std::string::npos) << vm->stderr_text();
}

TEST_F(GuestNet, ATapDeletedUnderTheVmDropsTheLinkAndTheVmGoesOn) {
  auto vm = net_guest(lan_, 0, "vt0", api_);
  ASSERT_TRUE(vm->wait_line("^NET mac=", kGuestUp)) << vm->stdout_text() << vm->stderr_text();
  auto tcp = echo_probe(lan_, EchoProbe::Kind::kTcp);
  ASSERT_TRUE(tcp);
  ASSERT_EQ(run_cmd({"ip", "-n", lan_.host(0), "link", "del", "vt0"}).status, 0);
  EXPECT_TRUE(vm->wait_stderr("the tap is gone", 10s)) << vm->stderr_text();
  const auto seq = vm->lines_matching("^HB cpu=0 ").size();
  ASSERT_TRUE(vm->wait_line("^HB cpu=0 seq=" + std::to_string(seq + 2) + " ", 20s))
      << "the VM must keep running:\n" << vm->stdout_text() << vm->stderr_text();
  EXPECT_FALSE(nic_stats(api_).value("link_up", true));
  auto st = api_call(api_, {{"cmd", "status"}});
  ASSERT_TRUE(st) << st.message();
  EXPECT_EQ((*st)["state"], "running");
}

// The guest keeps its MACs, so a destination must have as many NICs and no other mac=: checked in
// HELLO, before a page moves, with both named; the VM goes on at the source.
TEST_F(GuestNet, ADestinationWithOtherNicsIsRefusedBeforeAPageMoves) {
  lan_.add_tap(1, "vt0");
  auto vm = net_guest(lan_, 0, "vt0", api_);
  ASSERT_TRUE(vm->wait_line("^NET mac=" + kGuestMac, kGuestUp)) << vm->stdout_text() << vm->stderr_text();
  const std::string other_mac = "02:aa:bb:cc:dd:ee";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "the VM has 1 NIC(s), this destination 0"},
      {{"--net", "tap=vt0,mac=" + other_mac}, "has mac=" + other_mac + ", the guest has " + kGuestMac}};
  for (const auto& [nets, why] : cases) {
    const int port = free_port();
    std::vector<std::string> a{"run", "--mem", "64M", "--incoming", lan_.host_addr(1) + ":" + std::to_string(port)};
    a.insert(a.end(), nets.begin(), nets.end());
    VmProcess dst(a, {}, lan_.exec_prefix(1));
    ASSERT_TRUE(dst.wait_stderr("waiting for a migrating VM", 20s)) << dst.stderr_text();
    auto r = migrate(api_, lan_.host_addr(1) + ":" + std::to_string(port));
    EXPECT_NE(r.exit, 0);
    EXPECT_NE(r.stderr_text.find(why), std::string::npos) << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("refused"), std::string::npos) << r.stderr_text;
    EXPECT_TRUE(dst.wait_exit(20s)) << "the refusing destination ends";
  }
  // Still here, still answering.
  EXPECT_EQ(ping(lan_.hub(), lan_.guest_addr(0), 3, 20ms, 2s), 3u);
  auto s = api_call(api_, {{"cmd", "status"}});
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ((*s).value("state", ""), "running") << s->dump();
}

// The destination announces the guest before COMMIT (when the source's pause ends the last round);
// when it then refuses the COMMIT, the source resumes and announces the guest itself: the
// conversation goes on there, every byte in order.
TEST_F(GuestNet, AMigrationThatFailsAfterTheAnnouncementLeavesTheConversationAtTheSource) {
  lan_.add_tap(1, "vt0");
  auto vm = net_guest(lan_, 0, "vt0", api_);
  ASSERT_TRUE(vm->wait_line("^NET mac=" + kGuestMac, kGuestUp)) << vm->stdout_text() << vm->stderr_text();
  auto tcp = echo_probe(lan_, EchoProbe::Kind::kTcp);
  ASSERT_TRUE(tcp);
  std::this_thread::sleep_for(300ms);
  const int port = free_port();
  VmProcess dst({"run", "--mem", "64M", "--net", "tap=vt0", "--incoming", lan_.host_addr(1) + ":" + std::to_string(port)},
                {"MINIHV_MIGRATE_TEST_REFUSE_COMMIT=1"}, lan_.exec_prefix(1));
  ASSERT_TRUE(dst.wait_stderr("waiting for a migrating VM", 20s)) << dst.stderr_text();
  const uint64_t announced_before = nic_stats(api_).value("announcements", 0u);
  auto r = migrate(api_, lan_.host_addr(1) + ":" + std::to_string(port));
  EXPECT_NE(r.exit, 0) << r.stderr_text;
  EXPECT_GT(r.json["downtime_parts"].value("announced_ms", 0.0), 0.0) << r.json.dump();
  EXPECT_TRUE(dst.wait_exit(20s));
  const uint64_t want = tcp->echoed() + 300;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (tcp->echoed() < want && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_GE(tcp->echoed(), want) << "the conversation did not come back to the source\n" << vm->stdout_text();
  EXPECT_GT(nic_stats(api_).value("announcements", 0u), announced_before) << "the source announced the guest";
  const EchoReport t = tcp->finish(5s);
  expect_clean(t, "tcp");
  EXPECT_EQ(t.echoed, t.sent);
}

TEST_F(GuestNet, ATcpConversationGoesOnAcrossTwoMoves) {
  std::vector<long> gaps;
  migrate_back_and_forth(lan_, dir_, 2, gaps);
  EXPECT_EQ(gaps.size(), 2u);
}

}  // namespace
}  // namespace minihv::test
