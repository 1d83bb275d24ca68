// common/tls.h over real loopback TCP connections, one thread per side: data both ways (16 MiB each
// way intact), the wrong key, a plain-text peer, a silent peer, a peer that leaves.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "common/net.h"
#include "common/tls.h"

namespace minihv::tls {
namespace {

using namespace std::chrono_literals;

struct Pair {
  UniqueFd client, server;
};

// A connected loopback TCP pair (both blocking).
Pair connected_pair() {
  auto listener = net::listen_on({"127.0.0.1", 0});
  EXPECT_TRUE(listener) << listener.message();
  auto client = net::connect_to({"127.0.0.1", net::local_port(listener->get())}, 1s);
  EXPECT_TRUE(client) << client.message();
  pollfd p{listener->get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 2000), 1);
  UniqueFd server(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(server.valid());
  return {std::move(client).value(), std::move(server)};
}

Psk psk_of(uint8_t fill, std::string identity = std::string(kPskIdentity)) {
  std::array<uint8_t, keys::kKeyBytes> bytes;
  bytes.fill(fill);
  return {keys::Secret(bytes), std::move(identity)};
}

Deadline in(std::chrono::milliseconds ms) { return Clock::now() + ms; }

struct Outcome {
  std::optional<Result<Session>> session;
  Failure why = Failure::kNone;
  std::chrono::milliseconds took{};
  const std::string& message() const { return session->message(); }
  bool ok() const { return session->is_ok(); }
};

Outcome run(int fd, Role role, const Psk& psk, std::chrono::milliseconds limit) {
  Outcome o;
  const auto start = Clock::now();
  o.session.emplace(handshake(fd, role, psk, in(limit), &o.why));
  o.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return o;
}

// Both handshakes at once: the server's on a thread, the client's here.
std::pair<Outcome, Outcome> both(Pair& p, const Psk& client_psk, const Psk& server_psk,
                                 std::chrono::milliseconds limit = 5s) {
  Outcome server;
  std::thread t([&] { server = run(p.server.get(), Role::kServer, server_psk, limit); });
  Outcome client = run(p.client.get(), Role::kClient, client_psk, limit);
  t.join();
  return {std::move(client), std::move(server)};
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(&s[i], &r, 8);
  }
  return s;
}

std::string read_exactly(Session& s, size_t n) {
  std::string got(n, '\0');
  size_t have = 0;
  while (have < n) {
    auto r = s.read(got.data() + have, n - have, in(10s));
    EXPECT_TRUE(r) << r.message();
    if (!r || *r == 0) break;
    have += *r;
  }
  got.resize(have);
  return got;
}

bool blocking(int fd) { return !(::fcntl(fd, F_GETFL) & O_NONBLOCK); }

// Whether this kernel can do kernel TLS at all (the `tls` upper-layer protocol).
bool kernel_has_tls() {
  Pair p = connected_pair();
  return ::setsockopt(p.client.get(), IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls") == 0;
}

TEST(Tls, SameKeyCarriesDataBothWays) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(7), psk_of(7));
  ASSERT_TRUE(client.ok()) << client.message();
  ASSERT_TRUE(server.ok()) << server.message();
  Session& c = client.session->value();
  Session& s = server.session->value();
  ASSERT_TRUE(c.write_all("{\"cmd\":\"status\"}\n"));
  EXPECT_EQ(read_exactly(s, 17), "{\"cmd\":\"status\"}\n");
  ASSERT_TRUE(s.write_all("{\"ok\":true}\n"));
  EXPECT_EQ(read_exactly(c, 12), "{\"ok\":true}\n");
  EXPECT_TRUE(blocking(p.client.get()) && blocking(p.server.get())) << "the fd's flags come back";
  if (!kernel_has_tls()) {
    EXPECT_EQ(c.describe(), "user-space TLS (no kernel TLS)");
  }
  std::cout << "client: " << c.describe() << "; server: " << s.describe() << "\n";
}

TEST(Tls, SixteenMiBEachWayArriveIntactThenCloseNotifyEndsTheStream) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(1), psk_of(1));
  ASSERT_TRUE(client.ok() && server.ok()) << client.message() << " / " << server.message();
  Session& c = client.session->value();
  Session& s = server.session->value();
  const std::string up = random_bytes(16u << 20, 1), down = random_bytes(16u << 20, 2);
  std::string got_up;
  std::thread reader([&] { got_up = read_exactly(s, up.size()); });
  ASSERT_TRUE(c.write_all(up));
  reader.join();
  EXPECT_TRUE(got_up == up) << "16 MiB client -> server differ";
  std::string got_down;
  std::thread writer([&] { EXPECT_TRUE(s.write_all(down)); });
  got_down = read_exactly(c, down.size());
  writer.join();
  EXPECT_TRUE(got_down == down) << "16 MiB server -> client differ";
  ASSERT_TRUE(c.shutdown());
  char byte;
  auto end = s.read(&byte, 1, in(2s));
  ASSERT_TRUE(end) << end.message();
  EXPECT_EQ(*end, 0u);
}

// A poll loop must ask has_pending(): the rest of a record read in part is not on the fd any more.
TEST(Tls, BytesOpenSslHoldsAreReportedPending) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(8), psk_of(8));
  ASSERT_TRUE(client.ok() && server.ok());
  Session& s = server.session->value();
  EXPECT_FALSE(s.has_pending());
  ASSERT_TRUE(client.session->value().write_all("two lines\nin one record\n"));
  EXPECT_EQ(read_exactly(s, 10), "two lines\n");
  EXPECT_TRUE(s.has_pending());
  pollfd pfd{p.server.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0) << "the fd has nothing more: only has_pending() knows";
  EXPECT_EQ(read_exactly(s, 14), "in one record\n");
  EXPECT_FALSE(s.has_pending());
}

TEST(Tls, NonBlockingFdsWorkAndStayNonBlocking) {
  Pair p = connected_pair();
  for (int fd : {p.client.get(), p.server.get()}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  auto [client, server] = both(p, psk_of(3), psk_of(3));
  ASSERT_TRUE(client.ok() && server.ok()) << client.message() << " / " << server.message();
  const std::string data = random_bytes(4u << 20, 3);
  std::string got;
  std::thread reader([&] { got = read_exactly(server.session->value(), data.size()); });
  EXPECT_TRUE(client.session->value().write_all(data, in(10s)));
  reader.join();
  EXPECT_TRUE(got == data);
  EXPECT_FALSE(blocking(p.client.get()) || blocking(p.server.get()));
}

TEST(Tls, WrongKeyFailsOnBothSidesAndSaysSo) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(1), psk_of(2));
  ASSERT_FALSE(client.ok());
  ASSERT_FALSE(server.ok());
  for (const Outcome* o : {&client, &server}) {
    EXPECT_NE(o->message().find("does not hold this cluster's key"), std::string::npos) << o->message();
    EXPECT_EQ(o->why, Failure::kWrongKey) << o->message();
    EXPECT_LT(o->took, 2s);
  }
  std::cout << "client: " << client.message() << "\nserver: " << server.message() << "\n";
}

TEST(Tls, AnotherIdentityIsRefusedAndNamed) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(5, "someone else"), psk_of(5));
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.why, Failure::kWrongKey);
  EXPECT_NE(server.message().find("'someone else'"), std::string::npos) << server.message();
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.why, Failure::kWrongKey) << client.message();
  std::cout << "client: " << client.message() << "\nserver: " << server.message() << "\n";
}

// With the send direction in the kernel, plain bytes written to the fd itself arrive as TLS data
// (what the migration data path will do with io_uring); without it, they are not TLS and the
// receiver refuses them. The hw lane (MINIHV_HW_LANE, its L1 loads tls and the AES-GCM modules)
// must get kernel TLS; this host's kernel has none (CONFIG_TLS off): each side is checked where it is.
TEST(Tls, ThePlainFdCarriesTlsDataExactlyWhenTheKernelSends) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(6), psk_of(6));
  ASSERT_TRUE(client.ok() && server.ok());
  const bool kernel_sends = client.session->value().ktls_send();
  if (std::getenv("MINIHV_HW_LANE")) {
    EXPECT_TRUE(kernel_sends) << "the hw lane's L1 loads kernel TLS";
  }
  const std::string data = random_bytes(1u << 20, 6);
  if (!kernel_sends) {
    ASSERT_TRUE(net::send_all(p.client.get(), data.substr(0, 4096)));  // not TLS records
    char buf[16];
    auto got = server.session->value().read(buf, sizeof buf, in(2s));
    EXPECT_FALSE(got) << "plain bytes on a user-space TLS connection must not be taken as data";
    return;
  }
  ASSERT_TRUE(net::send_all(p.client.get(), data));  // send(2) on the fd, not SSL_write
  EXPECT_TRUE(read_exactly(server.session->value(), data.size()) == data);
  ASSERT_TRUE(client.session->value().shutdown());
  char byte;
  auto end = server.session->value().read(&byte, 1, in(2s));
  ASSERT_TRUE(end) << end.message();
  EXPECT_EQ(*end, 0u);
}

// An ordinary TLS 1.3 client (certificates expected, no PSK), as `openssl s_client` would be.
TEST(Tls, ATlsClientWithoutThePskIsRefused) {
  Pair p = connected_pair();
  std::thread stranger([&] {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, p.client.get());
    EXPECT_NE(SSL_connect(ssl), 1);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  });
  Outcome server = run(p.server.get(), Role::kServer, psk_of(1), 5s);
  stranger.join();
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.why, Failure::kWrongKey) << server.message();
  EXPECT_NE(server.message().find("offered no pre-shared key"), std::string::npos) << server.message();
  std::cout << "server: " << server.message() << "\n";
}

TEST(Tls, PlainTextClientIsRefusedPromptly) {
  Pair p = connected_pair();
  ASSERT_TRUE(net::send_all(p.client.get(), "{\"cmd\":\"die\"}\n"));
  Outcome server = run(p.server.get(), Role::kServer, psk_of(1), 10s);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.why, Failure::kNotTls) << server.message();
  EXPECT_NE(server.message().find("does not speak TLS"), std::string::npos) << server.message();
  EXPECT_LT(server.took, 1s) << "it must not wait for more bytes";
  std::cout << "server: " << server.message() << "\n";
}

TEST(Tls, PlainTextServerIsRefused) {
  Pair p = connected_pair();
  std::thread plain([&] {
    char buf[512];
    EXPECT_GT(::read(p.server.get(), buf, sizeof buf), 0);  // the ClientHello
    EXPECT_TRUE(net::send_all(p.server.get(), "{\"ok\":false,\"error\":\"bad request\"}\n"));
  });
  Outcome client = run(p.client.get(), Role::kClient, psk_of(1), 10s);
  plain.join();
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.why, Failure::kNotTls) << client.message();
  EXPECT_LT(client.took, 1s);
}

TEST(Tls, SilentPeerEndsTheHandshakeAtTheDeadline) {
  for (Role role : {Role::kServer, Role::kClient}) {
    Pair p = connected_pair();
    const int fd = role == Role::kServer ? p.server.get() : p.client.get();
    Outcome o = run(fd, role, psk_of(1), 300ms);
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.why, Failure::kTimeout) << o.message();
    EXPECT_NE(o.message().find("not finished within"), std::string::npos) << o.message();
    EXPECT_GE(o.took, 290ms);
    EXPECT_LT(o.took, 2s);
  }
}

TEST(Tls, PeerLeavingMidHandshakeIsNamed) {
  Pair p = connected_pair();
  p.client.reset();
  Outcome server = run(p.server.get(), Role::kServer, psk_of(1), 5s);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.why, Failure::kClosed) << server.message();
  EXPECT_NE(server.message().find("closed the connection"), std::string::npos) << server.message();
}

TEST(Tls, ReadHonoursItsDeadlineOnABlockingFd) {
  Pair p = connected_pair();
  auto [client, server] = both(p, psk_of(9), psk_of(9));
  ASSERT_TRUE(client.ok() && server.ok());
  char buf[16];
  const auto start = Clock::now();
  auto r = server.session->value().read(buf, sizeof buf, in(200ms));
  EXPECT_FALSE(r);
  EXPECT_LT(Clock::now() - start, 2s);
}

// Two sessions whose client end has gone away (no close_notify, the socket closed).
struct Abandoned {
  Pair p;
  std::optional<Session> server;
};
void abandon(Abandoned& a) {
  a.p = connected_pair();
  auto [client, server] = both(a.p, psk_of(4), psk_of(4));
  ASSERT_TRUE(client.ok() && server.ok());
  a.server.emplace(std::move(*server.session).value());
  client.session.reset();
  a.p.client.reset();
}

TEST(Tls, PeerGoneWithoutCloseNotifyIsAnErrorOnRead) {
  Abandoned a;
  ASSERT_NO_FATAL_FAILURE(abandon(a));
  char byte;
  auto r = a.server->read(&byte, 1, in(2s));
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("without TLS close_notify"), std::string::npos) << r.message();
}

TEST(Tls, PeerGoneIsAWriteErrorNotSigpipe) {
  Abandoned a;
  ASSERT_NO_FATAL_FAILURE(abandon(a));
  const std::string chunk(1u << 20, 'x');
  Status w;
  for (int i = 0; i < 64 && w; ++i) w = a.server->write_all(chunk, in(2s));  // SIGPIPE would end the binary
  EXPECT_FALSE(w);
  std::cout << "write: " << w.message() << "\n";
}

}  // namespace
}  // namespace minihv::tls
