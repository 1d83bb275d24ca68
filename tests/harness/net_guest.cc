#include "tests/harness/net_guest.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <thread>

#include "vmm/api.h"

namespace minihv::test {

using namespace std::chrono_literals;

namespace {
constexpr const char* kNetHeartbeat = "^HB cpu=0 .* rx=";
}  // namespace

std::unique_ptr<VmProcess> net_guest(const GuestLan& lan, unsigned h, const std::string& tap, const std::string& api,
                                     std::vector<std::string> more) {
  std::vector<std::string> a{"run", "--kernel", testguest_elf(), "--mem", "64M", "--cmdline",
                             "net ip=" + lan.guest_addr(0) + "/24", "--net", "tap=" + tap + ",mac=" + kGuestMac,
                             "--api", api};
  a.insert(a.end(), more.begin(), more.end());
  return std::make_unique<VmProcess>(a, std::vector<std::string>{}, lan.exec_prefix(h));
}

std::chrono::microseconds echo_period() { return kEchoPeriod * time_stretch(); }

std::unique_ptr<EchoProbe> echo_probe(const GuestLan& lan, EchoProbe::Kind kind) {
  std::string why;
  auto p = EchoProbe::start(kind, lan.hub(), lan.guest_addr(0), kEchoPort, echo_period(), kGuestUp, why);
  EXPECT_TRUE(p) << why;
  return p;
}

nlohmann::json nic_stats(const std::string& api, size_t i) {
  auto s = api_call(api, {{"cmd", "stats"}});
  EXPECT_TRUE(s) << s.message();
  return s && (*s)["nics"].size() > i ? (*s)["nics"][i] : nlohmann::json::object();
}

void expect_clean(const EchoReport& r, const char* what) {
  EXPECT_FALSE(r.reset) << what << ": " << r.error;
  EXPECT_EQ(r.bad, 0u) << what << ": " << r.error;
  EXPECT_TRUE(r.error.empty()) << what << ": " << r.error;
}

// The guest moves host 0 -> host 1 -> host 0 ... while a client sends a numbered message every
// millisecond over one TCP connection and UDP: no reset, every TCP byte back in order, every UDP
// datagram answered, and the largest gap per move. `moves` migrations; the gaps are printed for the record.
void migrate_back_and_forth(GuestLan& lan, TempDir& dir, int moves, std::vector<long>& gaps_ms, unsigned queues) {
  const bool mq = queues > 1;
  const std::string tap = mq ? "vtq" : "vt0", nic = mq ? tap + ",queues=" + std::to_string(queues) : tap;
  if (mq) lan.add_tap(0, tap, true);
  lan.add_tap(1, tap, mq);
  std::unique_ptr<VmProcess> vm[2];
  const std::string api[2] = {dir.file("h0.sock"), dir.file("h1.sock")};
  vm[0] = net_guest(lan, 0, nic, api[0]);
  ASSERT_TRUE(vm[0]->wait_line("^NET mac=" + kGuestMac, kGuestUp)) << vm[0]->stdout_text() << vm[0]->stderr_text();
  auto tcp = echo_probe(lan, EchoProbe::Kind::kTcp);
  auto udp = echo_probe(lan, EchoProbe::Kind::kUdp);
  ASSERT_TRUE(tcp && udp);
  std::this_thread::sleep_for(300ms);
  gaps_ms.clear();
  for (int m = 0; m < moves; ++m) {
    const unsigned from = m % 2, to = 1 - from;
    const int port = free_port();
    std::vector<std::string> a{"run", "--mem", "64M", "--net", "tap=" + nic, "--api", api[to], "--incoming",
                               lan.host_addr(to) + ":" + std::to_string(port)};
    vm[to] = std::make_unique<VmProcess>(a, std::vector<std::string>{}, lan.exec_prefix(to));
    ASSERT_TRUE(vm[to]->wait_stderr("waiting for a migrating VM", 20s)) << vm[to]->stderr_text();
    tcp->mark();
    auto r = migrate(api[from], lan.host_addr(to) + ":" + std::to_string(port));
    ASSERT_EQ(r.exit, 0) << "move " << m << ": " << r.stderr_text;
    ASSERT_TRUE(vm[from]->wait_exit(20s)) << "the source must end after the move";
    // The conversation must go on: 300 more messages echoed on the destination.
    const uint64_t want = tcp->echoed() + 300;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (tcp->echoed() < want && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    ASSERT_GE(tcp->echoed(), want) << "move " << m << ": the TCP echo did not continue\n" << vm[to]->stdout_text();
    gaps_ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(tcp->max_gap_since_mark()).count());
    EXPECT_EQ(nic_stats(api[to]).value("mac", ""), kGuestMac);
    EXPECT_EQ(nic_stats(api[to]).value("tap", ""), tap);
  }
  // The guest's own word that nothing came out of order: its next heartbeat after the last move
  // counts no drop (an out-of-order TCP segment is one, docs/test-guest.md).
  (void)vm[moves % 2]->wait_line(kNetHeartbeat, 3s, vm[moves % 2]->line_count());
  const EchoReport t = tcp->finish(5s), u = udp->finish(2s);
  expect_clean(t, "tcp");
  EXPECT_EQ(t.echoed, t.sent);
  EXPECT_EQ(u.bad, 0u);
  // Nothing is lost to a move: the destination announces the guest before the source reads what
  // reached it during the pause, and that goes along (docs/migration-protocol.md, "NICs across
  // the switchover"). Every datagram of the client's, one a millisecond, is answered.
  EXPECT_EQ(u.echoed, u.sent) << "UDP datagrams lost across " << moves << " moves";
  std::string line;
  for (long g : gaps_ms) line += " " + std::to_string(g);
  std::printf("[ gaps ] TCP echo gap per move (ms):%s; udp %llu/%llu answered\n", line.c_str(),
              static_cast<unsigned long long>(u.echoed), static_cast<unsigned long long>(u.sent));
  for (auto& v : vm) {
    if (!v) continue;
    EXPECT_TRUE(v->lines_matching("errs=[1-9]|CORRUPT|PANIC").empty()) << v->stdout_text();
    EXPECT_TRUE(v->lines_matching(kNetHeartbeat + std::string(".* drops=[1-9]")).empty())
        << "the guest dropped frames (out of order?) across the moves\n"
        << v->stdout_text();
  }
}

}  // namespace minihv::test
