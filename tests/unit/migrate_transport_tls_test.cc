// The transport's TLS against hostile or mistaken peers, over real loopback sockets and real TLS:
// a wrong key, a plain-TCP peer either way, and a flood of idle connections before a real source.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "migrate/transport.h"
#include "tests/loopback_connect.h"
#include "tests/unit/migrate_test_util.h"

namespace minihv::migrate {
namespace {

using namespace std::chrono_literals;

Endpoint loopback(uint16_t port) { return {"127.0.0.1", port}; }

// The destination: one session accepted with `psk`, its STREAM_OPENs' session id, then COMMIT awaited.
struct Destination {
  Listener listener;
  std::optional<tls::Psk> psk;
  std::chrono::milliseconds timeout;
  Status result;
  uint64_t session = 0;
  std::string tls;
  std::thread thread;

  void start() {
    thread = std::thread([this] {
      TransportOptions o;
      o.psk = psk;
      auto s = listener.accept(o, timeout);
      if (!s) {
        result = s.status();
        return;
      }
      session = (*s)->session_id();
      tls = (*s)->tls();
      result = (*s)->receive(
          [](const FrameView& v) -> Result<Next> { return v.type() == FrameType::kCommit ? Next::kStop : Next::kContinue; },
          5000ms);
    });
  }
  void join() {
    if (thread.joinable()) thread.join();
  }
};

Destination listening(std::optional<tls::Psk> psk, std::chrono::milliseconds timeout) {
  auto l = Listener::listen(loopback(0));
  EXPECT_TRUE(l) << l.message();
  return Destination{std::move(l).value(), std::move(psk), timeout, Status::ok(), 0, "", {}};
}

// A source that sends one PAGES frame on each stream and COMMIT.
Status send_session(uint16_t port, std::optional<tls::Psk> psk, uint16_t streams, uint64_t session,
                    std::chrono::milliseconds connect_timeout = TransportOptions{}.connect_timeout) {
  TransportOptions o;
  o.connect_timeout = connect_timeout;
  o.streams = streams;
  o.psk = std::move(psk);
  o.session_id = session;
  const Endpoint target = loopback(port);
  auto s = Session::connect(std::span(&target, 1), o);
  if (!s) return s.status();
  for (uint16_t i = 0; i < streams; ++i) MINIHV_TRY((*s)->send(i, tagged_pages_frame(i, 10'000)));
  MINIHV_TRY((*s)->send(kControlStream, make_commit()));
  return (*s)->flush();
}

TEST(MigrateTransportTls, AWrongKeyIsRefusedWithAMessageNamingThePeer) {
  auto d = listening(test_psk(), 1500ms);
  d.start();
  Status st = send_session(d.listener.port(), test_psk(0x43), 2, 7);
  d.join();
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("127.0.0.1:" + std::to_string(d.listener.port())), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("key"), std::string::npos) << st.message();
  EXPECT_FALSE(d.result) << "the destination took a session from a peer without the key";
}

TEST(MigrateTransportTls, APlainSourceNeverReachesATlsDestinationAndARealOneStillDoes) {
  auto d = listening(test_psk(), 10'000ms);
  d.start();
  // The plain source's STREAM_OPENs go out (nothing answers them): the destination reads them as
  // a broken TLS handshake and drops the connections.
  (void)send_session(d.listener.port(), std::nullopt, 2, 0x0BAD);
  ASSERT_TRUE(send_session(d.listener.port(), test_psk(), 2, 0x600D));
  d.join();
  ASSERT_TRUE(d.result) << d.result.message();
  EXPECT_EQ(d.session, 0x600Du);
  EXPECT_NE(d.tls.find("TLS"), std::string::npos) << d.tls;
}

TEST(MigrateTransportTls, ATlsSourceIsRefusedByAPlainDestination) {
  auto d = listening(std::nullopt, 1500ms);
  d.start();
  Status st = send_session(d.listener.port(), test_psk(), 1, 9);
  d.join();
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("127.0.0.1:" + std::to_string(d.listener.port())), std::string::npos) << st.message();
  EXPECT_FALSE(d.result);
}

TEST(MigrateTransportTls, PlainTcpWorksWhenBothSidesAreInsecure) {
  auto d = listening(std::nullopt, 5000ms);
  d.start();
  ASSERT_TRUE(send_session(d.listener.port(), std::nullopt, 2, 11));
  d.join();
  ASSERT_TRUE(d.result) << d.result.message();
  EXPECT_NE(d.tls.find("plain TCP"), std::string::npos) << d.tls;
}

// Waits until no loopback TCP connection from local port `port` (the destination's) has bytes
// the other end has not acknowledged (/proc/net/tcp's tx_queue); false after `limit`.
bool wait_all_sent_from(uint16_t port, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  char want[16];
  std::snprintf(want, sizeof want, ":%04X", port);
  while (std::chrono::steady_clock::now() < until) {
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    bool unsent = false;
    std::getline(tcp, line);  // the header
    while (std::getline(tcp, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues;
      f >> slot >> local >> remote >> state >> queues;
      if (local.ends_with(want) && state != "0A" && queues.substr(0, queues.find(':')) != "00000000") unsent = true;
    }
    if (!unsent) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// A destination that gave up sent its ABORT and closed while our relay was still sending (the CI
// run where a source stayed "in doubt" after a refused round): sending fails, and everything the
// destination sent before it closed, the ABORT last, still reaches the lane. This test does NOT
// catch the race itself (it passes without the fix: the relay has read the ABORT before its write
// fails); a variant with more bulk than the socketpair holds failed ~4 of 5 runs without the fix,
// but also now and then with it (the destination's unsent bytes die with the reset). The race is
// what MigrationOutOfOrder's round_repeated hits now and then.
TEST(MigrateTransportTls, AnAbortSentBeforeThePeerClosedIsReadAfterTheRelaysWriteFailed) {
  auto d = listening(test_psk(), 5000ms);
  std::unique_ptr<Session> rx;
  std::thread accepting([&] {
    TransportOptions o;
    o.psk = test_psk();
    auto s = d.listener.accept(o, 5000ms);
    if (s) rx = std::move(s).value();
  });
  TransportOptions o;
  o.psk = test_psk();
  const Endpoint target = loopback(d.listener.port());
  auto tx = Session::connect(std::span(&target, 1), o);
  accepting.join();
  ASSERT_TRUE(tx) << tx.message();
  ASSERT_TRUE(rx);
  constexpr uint32_t kBulkFrames = 12;  // 3 MiB: what our relay and its socketpair take unread
  for (uint32_t i = 0; i < kBulkFrames; ++i) ASSERT_TRUE(rx->send(kControlStream, tagged_pages_frame(i, 256 << 10)));
  ASSERT_TRUE(rx->send(kControlStream, make_abort({"gave up first"})));
  ASSERT_TRUE(rx->flush());
  rx.reset();
  // Every byte of it in our kernel before we send: the reset our send brings would drop the rest.
  ASSERT_TRUE(wait_all_sent_from(d.listener.port(), 10s));
  ASSERT_FALSE(send_until_refused(**tx)) << "sending to a closed peer must fail";
  std::string heard;
  uint32_t pages = 0;
  Status st = (*tx)->receive_remaining(
      [&](const FrameView& v) -> Result<Next> {
        if (v.type() != FrameType::kAbort) return ++pages, Next::kContinue;
        auto a = parse_abort(v);
        heard = a ? a->reason : a.message();
        return Next::kStop;
      },
      2000ms);
  EXPECT_EQ(pages, kBulkFrames);
  EXPECT_EQ(heard, "gave up first") << st.message();
}

// An idle connection to 127.0.0.1:port from `from` (blocking connect: one at a time, so the
// listener's small backlog never overflows).
UniqueFd idle_connection(uint16_t port, const char* from = "127.0.0.1") {
  return testnet::connect_loopback(port, from);
}

// Whether the listener closed `fd` (EOF) within `limit`.
bool closed_within(int fd, std::chrono::milliseconds limit) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

// One host flooding the listener closes only its own half-open connections: another address's
// stays, though the flood's oldest go.
TEST(MigrateTransportTls, AFloodFromOneAddressClosesOnlyItsOwnHalfOpenConnections) {
  auto d = listening(test_psk(), 30'000ms);
  UniqueFd cancel(::eventfd(0, EFD_CLOEXEC));
  std::thread accepting([&] {
    TransportOptions o;
    o.psk = test_psk();
    (void)d.listener.accept(o, 30'000ms, cancel.get());
  });
  constexpr const char* kOtherHost = "127.0.0.2";
  UniqueFd other = idle_connection(d.listener.port(), kOtherHost);
  ASSERT_TRUE(other.valid()) << std::strerror(errno);
  constexpr size_t kOver = 8;
  std::vector<UniqueFd> flood;
  for (size_t i = 0; i < kMaxHalfOpenPerAddress + kOver; ++i) {
    flood.push_back(idle_connection(d.listener.port()));
    ASSERT_TRUE(flood.back().valid()) << std::strerror(errno);
  }
  // Well within kOpenDeadline, after which every one of them would go.
  EXPECT_TRUE(closed_within(flood[kOver - 1].get(), kOpenDeadline / 2)) << "the flood's oldest were not closed";
  EXPECT_FALSE(closed_within(flood[kOver].get(), 0ms)) << "more of the flood closed than the cap says";
  EXPECT_FALSE(closed_within(other.get(), 0ms)) << "another address's connection was closed by the flood";
  const uint64_t one = 1;
  ASSERT_EQ(::write(cancel.get(), &one, sizeof one), 8);
  accepting.join();
}

TEST(MigrateTransportTls, ElevenHundredIdleConnectionsDoNotKeepARealSourceOut) {
  constexpr size_t kIdle = 1100;
  // This process holds both ends: the idle clients, and the listener's (at most kMaxHalfOpen).
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  const rlim_t need = kIdle + kMaxHalfOpen + 256;
  if (lim.rlim_cur < need) {
    ASSERT_GE(lim.rlim_max, need) << "the hard fd limit is too low for this test";
    lim.rlim_cur = need;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  // Generous waits: under ASan the listener needs about a minute for the 1100 (each accepted
  // connection costs a TLS object), ~8 s without.
  auto d = listening(test_psk(), 300'000ms);
  d.start();
  std::vector<UniqueFd> idle;
  for (size_t i = 0; i < kIdle; ++i) {
    idle.push_back(idle_connection(d.listener.port()));
    ASSERT_TRUE(idle.back().valid()) << "idle connection " << i << ": " << std::strerror(errno);
  }
  // The listener works through the idle connections still in its accept queue before it reaches the
  // real ones (under ASan that alone took longer than the default 3 s). Without the half-open cap
  // the idle ones would hold every slot until their deadlines, and later ones would wait in the
  // accept queue until the source gave up.
  constexpr auto kPatience = std::chrono::seconds(120);
  Status st = send_session(d.listener.port(), test_psk(), 4, 0xF00D, kPatience);
  d.join();
  ASSERT_TRUE(st) << st.message();
  ASSERT_TRUE(d.result) << d.result.message();
  EXPECT_EQ(d.session, 0xF00Du);
}

}  // namespace
}  // namespace minihv::migrate
