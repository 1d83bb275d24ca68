// common/jsonl.h over TLS (common/channel.h, common/tls.h) and its per-peer cap: real loopback
// TCP, real handshakes, a real server with a key against plain, wrong-key and silent clients.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "common/channel.h"
#include "common/jsonl.h"
#include "common/net.h"
#include "common/tls.h"
#include "tests/loopback_connect.h"

namespace minihv {
namespace {

using namespace std::chrono_literals;
using jsonl::Json;

tls::Psk psk_of(uint8_t fill) {
  std::array<uint8_t, keys::kKeyBytes> bytes;
  bytes.fill(fill);
  return {keys::Secret(bytes)};
}

struct Served {
  std::unique_ptr<jsonl::Server> server;
  net::Endpoint at;
  std::shared_ptr<std::atomic<int>> handled = std::make_shared<std::atomic<int>>(0);
};

// An echo server on 127.0.0.1 (any port), TLS with `psk` when given; counts the requests it handles.
Served serve(jsonl::Limits limits, std::optional<tls::Psk> psk, jsonl::StreamCommands streams = {}) {
  Served s;
  auto fd = net::listen_on({"127.0.0.1", 0});
  EXPECT_TRUE(fd) << fd.message();
  s.at = {"127.0.0.1", net::local_port(fd->get())};
  auto handled = s.handled;
  auto server = jsonl::Server::serve(
      std::move(fd).value(), "test", limits,
      [handled](const Json& req, const jsonl::Progress& progress) -> Json {
        ++*handled;
        if (req.value("cmd", "") == "slow") {
          progress({{"step", 1}});
          progress({{"step", 2}});
        }
        return {{"ok", true}, {"echo", req}};
      },
      std::move(streams), std::move(psk));
  EXPECT_TRUE(server) << server.message();
  s.server = std::move(server).value();
  return s;
}

UniqueFd connect(const net::Endpoint& at) {
  auto fd = net::connect_to(at, 1s);
  EXPECT_TRUE(fd) << fd.message();
  return std::move(fd).value();
}

// A connection from another loopback address (127.0.0.0/8 is all local): another "peer".
UniqueFd connect_from(const char* source, const net::Endpoint& at) {
  UniqueFd fd = testnet::connect_loopback(at.port, source);
  EXPECT_TRUE(fd.valid()) << std::strerror(errno);
  return fd;
}

Result<TlsChannel> tls_client(int fd, const tls::Psk& psk, tls::Failure* why = nullptr) {
  auto s = tls::handshake(fd, tls::Role::kClient, psk, std::chrono::steady_clock::now() + 5s, why);
  if (!s) return s.status();
  return TlsChannel(std::move(*s));
}

jsonl::CallOptions quick() { return jsonl::CallOptions::with_silence(3s); }

// Whether the server closes `fd` within `limit` (reading away whatever it sends first).
bool closed_within(int fd, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (::recv(fd, buf, sizeof buf, 0) <= 0) return true;
  }
  return false;
}

TEST(JsonlTls, ATlsClientWithTheKeyGetsProgressAndRepliesOnOneConnection) {
  auto s = serve({}, psk_of(7));
  auto fd = connect(s.at);
  auto ch = tls_client(fd.get(), psk_of(7));
  ASSERT_TRUE(ch) << ch.message();
  int steps = 0;
  auto r = jsonl::call(*ch, "test", {{"cmd", "slow"}}, quick(), [&](const Json&) { ++steps; });
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(steps, 2);
  EXPECT_EQ((*r)["echo"]["cmd"], "slow");
  auto again = jsonl::call(*ch, "test", {{"cmd", "ping"}}, quick());
  ASSERT_TRUE(again) << again.message();
  EXPECT_EQ(*s.handled, 2);
}

// A line longer than one read (4 KiB) in one TLS record: the rest of it waits in OpenSSL, not on
// the fd. A reader that polled the fd first would wait for the read timeout and drop the client.
TEST(JsonlTls, ALineLargerThanOneReadIsReadWithoutWaitingForTheFd) {
  jsonl::Limits l;
  l.read_timeout = 1500ms;
  auto s = serve(l, psk_of(7));
  auto fd = connect(s.at);
  auto ch = tls_client(fd.get(), psk_of(7));
  ASSERT_TRUE(ch) << ch.message();
  const std::string big(12000, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  auto r = jsonl::call(*ch, "test", {{"cmd", "big"}, {"pad", big}}, quick());
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ((*r)["echo"]["pad"], big);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
}

TEST(JsonlTls, APlainClientGetsOnePlainErrorLineAndNothingIsHandled) {
  auto s = serve({}, psk_of(7));
  auto fd = connect(s.at);
  ASSERT_TRUE(jsonl::write_line(fd.get(), {{"cmd", "die"}}));
  jsonl::LineReader reader(4096);
  std::string line;
  ASSERT_EQ(reader.next(fd.get(), line, 5s), jsonl::LineReader::Got::kLine);
  const Json j = Json::parse(line);
  EXPECT_EQ(j["ok"], false);
  EXPECT_NE(j["error"].get<std::string>().find("speaks TLS only"), std::string::npos) << line;
  EXPECT_EQ(reader.next(fd.get(), line, 5s), jsonl::LineReader::Got::kClosed);
  EXPECT_EQ(*s.handled, 0);
}

TEST(JsonlTls, AClientWithAnotherKeyIsRefusedAndNothingIsHandled) {
  auto s = serve({}, psk_of(7));
  auto fd = connect(s.at);
  tls::Failure why = tls::Failure::kNone;
  auto ch = tls_client(fd.get(), psk_of(8), &why);
  ASSERT_FALSE(ch);
  EXPECT_EQ(why, tls::Failure::kWrongKey) << ch.message();
  EXPECT_EQ(*s.handled, 0);
  auto good = connect(s.at);  // the server lives on
  auto ok = tls_client(good.get(), psk_of(7));
  ASSERT_TRUE(ok) << ok.message();
  EXPECT_TRUE(jsonl::call(*ok, "test", {{"cmd", "ping"}}, quick()));
}

TEST(JsonlTls, ASilentClientIsClosedAtTheHandshakeDeadline) {
  auto s = serve({}, psk_of(7));
  auto fd = connect(s.at);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(closed_within(fd.get(), jsonl::kHandshakeDeadline + 3s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, jsonl::kHandshakeDeadline - 100ms);
}

TEST(JsonlTls, AnOversizedLineOverTlsGetsAnErrorLineAndTheServerLives) {
  jsonl::Limits l;
  l.max_line_bytes = 1024;
  auto s = serve(l, psk_of(7));
  auto fd = connect(s.at);
  auto ch = tls_client(fd.get(), psk_of(7));
  ASSERT_TRUE(ch) << ch.message();
  ASSERT_TRUE(ch->write_all(std::string(8000, 'y')));  // and never a newline
  jsonl::LineReader reader(4096);
  std::string line;
  ASSERT_EQ(reader.next(*ch, line, 5s), jsonl::LineReader::Got::kLine);
  EXPECT_NE(line.find("too long"), std::string::npos) << line;
  EXPECT_EQ(*s.handled, 0);
  auto next = connect(s.at);
  auto ok = tls_client(next.get(), psk_of(7));
  ASSERT_TRUE(ok) << ok.message();
  EXPECT_TRUE(jsonl::call(*ok, "test", {{"cmd", "ping"}}, quick()));
}

TEST(JsonlTls, StreamCommandsAreRefusedOverTls) {
  jsonl::StreamCommands streams;
  bool opened = false;
  streams["console"] = [&](const Json&) -> Result<jsonl::Stream> {
    opened = true;
    return jsonl::Stream([](int, int, const std::string&) {});
  };
  auto s = serve({}, psk_of(7), streams);
  auto fd = connect(s.at);
  auto ch = tls_client(fd.get(), psk_of(7));
  ASSERT_TRUE(ch) << ch.message();
  auto r = jsonl::call(*ch, "test", {{"cmd", "console"}}, quick());
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ((*r)["ok"], false);
  EXPECT_FALSE(opened);
}

// A flood of plain-text clients: each is refused, but the log gets at most kRefusalLogsPerSecond
// lines a second (stderr of this process, where common/log.h writes).
TEST(JsonlTls, AFloodOfRefusedClientsDoesNotFloodTheLog) {
  auto s = serve({}, psk_of(7));
  testing::internal::CaptureStderr();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 60; ++i) {
    auto fd = connect(s.at);
    ASSERT_TRUE(jsonl::write_line(fd.get(), {{"cmd", "die"}}));
    jsonl::LineReader reader(4096);
    std::string line;
    EXPECT_EQ(reader.next(fd.get(), line, 5s), jsonl::LineReader::Got::kLine);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string log = testing::internal::GetCapturedStderr();
  size_t lines = 0;
  for (size_t at = 0; (at = log.find("refused a connection from", at)) != std::string::npos; ++at) ++lines;
  EXPECT_GE(lines, 1u);
  EXPECT_LE(lines, static_cast<size_t>(jsonl::kRefusalLogsPerSecond * (seconds + 1.0))) << log;
  EXPECT_LT(lines, 60u) << "every refusal was logged";
  EXPECT_EQ(*s.handled, 0);
}

TEST(JsonlPerPeer, OneAddressHoldsAtMostItsCapAndAnotherAddressStillGetsIn) {
  jsonl::Limits l;
  l.max_per_peer = 2;
  auto s = serve(l, std::nullopt);
  auto a = connect_from("127.0.0.2", s.at);
  auto b = connect_from("127.0.0.2", s.at);
  ASSERT_TRUE(jsonl::call(a.get(), "test", {{"cmd", "ping"}}, quick()));  // both admitted and held
  ASSERT_TRUE(jsonl::call(b.get(), "test", {{"cmd", "ping"}}, quick()));
  auto c = connect_from("127.0.0.2", s.at);
  jsonl::LineReader reader(4096);
  std::string line;
  ASSERT_EQ(reader.next(c.get(), line, 5s), jsonl::LineReader::Got::kLine);
  EXPECT_NE(line.find("too many connections from 127.0.0.2"), std::string::npos) << line;
  auto other = connect_from("127.0.0.3", s.at);
  EXPECT_TRUE(jsonl::call(other.get(), "test", {{"cmd", "ping"}}, quick()));
  a.reset();  // a slot of 127.0.0.2 comes back once its connection ends
  std::optional<Result<Json>> r;
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    auto d = connect_from("127.0.0.2", s.at);
    r = jsonl::call(d.get(), "test", {{"cmd", "ping"}}, quick());
    if (*r && (**r)["ok"] == true) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((**r)["ok"], true);
}

}  // namespace
}  // namespace minihv
