// QUERY / QUERY_REPLY over real loopback sockets: the destination's witness answers for its own
// session only, survives peers that say nothing or garbage, and an unreachable target is no proof.
#include "migrate/in_doubt.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <thread>

#include "common/fd.h"

namespace minihv::migrate {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kSession = 0x5E55'1011'ABCD'0001ull;

// The channel key both sides use (TLS is the default); `fill` makes a different one.
std::optional<tls::Psk> key(uint8_t fill = 0x42) {
  std::array<uint8_t, keys::kKeyBytes> b;
  b.fill(fill);
  return tls::Psk{keys::Secret(b)};
}

struct Witnessed {
  Endpoint at;
  std::unique_ptr<CommitWitness> witness;
};

// A plain client connection to the witness (which then sees whatever the test sends, or nothing).
UniqueFd connect_raw(const Endpoint& at) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(at.port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

Witnessed start_witness(std::optional<tls::Psk> psk = key()) {
  auto l = Listener::listen({"127.0.0.1", 0});
  EXPECT_TRUE(l) << l.message();
  Endpoint at{"127.0.0.1", l->port()};
  return {at, CommitWitness::start(std::move(l).value(), kSession, std::move(psk))};
}

TEST(MigrateInDoubt, TheWitnessSaysCommittedForItsSessionOnly) {
  auto w = start_witness();
  const std::vector<Endpoint> targets{w.at};
  EXPECT_EQ(ask_committed(targets, kSession, 2s, key()).answer, CommitAnswer::kCommitted);
  Asked other = ask_committed(targets, kSession + 1, 2s, key());
  EXPECT_EQ(other.answer, CommitAnswer::kUnknown);
  EXPECT_NE(other.detail.find("does not know the session"), std::string::npos) << other.detail;
}

TEST(MigrateInDoubt, AnUnreachableTargetIsNoProofAndTheNextOneIsAsked) {
  auto w = start_witness();
  auto closed = Listener::listen({"127.0.0.1", 0});
  ASSERT_TRUE(closed);
  const Endpoint gone{"127.0.0.1", closed->port()};
  closed = Status::error("closed");  // nobody listens there any more
  Asked only_gone = ask_committed(std::vector<Endpoint>{gone}, kSession, 1s, key());
  EXPECT_EQ(only_gone.answer, CommitAnswer::kUnknown);
  EXPECT_NE(only_gone.detail.find("no answer"), std::string::npos) << only_gone.detail;
  Asked both = ask_committed(std::vector<Endpoint>{gone, w.at}, kSession, 1s, key());
  EXPECT_EQ(both.answer, CommitAnswer::kCommitted) << both.detail;
}

TEST(MigrateInDoubt, SilentAndGarbagePeersDoNotKeepTheWitnessFromAnswering) {
  auto w = start_witness();
  UniqueFd silent = connect_raw(w.at);
  UniqueFd garbage = connect_raw(w.at);
  const char junk[] = "GET / HTTP/1.0\r\n\r\n and then some more bytes than a header";
  ASSERT_GT(::send(garbage.get(), junk, sizeof junk, MSG_NOSIGNAL), 0);
  // Both are ahead of us in the witness's queue; it drops each within its read timeout.
  EXPECT_EQ(ask_committed(std::vector<Endpoint>{w.at}, kSession, 2s, key()).answer, CommitAnswer::kCommitted);
}

TEST(MigrateInDoubt, AQueryWithAnotherKeyOrInPlainTcpIsNoProof) {
  auto w = start_witness();
  Asked wrong = ask_committed(std::vector<Endpoint>{w.at}, kSession, 1s, key(0x43));
  EXPECT_EQ(wrong.answer, CommitAnswer::kUnknown);
  EXPECT_NE(wrong.detail.find("key"), std::string::npos) << wrong.detail;
  EXPECT_EQ(ask_committed(std::vector<Endpoint>{w.at}, kSession, 1s, std::nullopt).answer, CommitAnswer::kUnknown);
  // ... and the witness still answers the right key.
  EXPECT_EQ(ask_committed(std::vector<Endpoint>{w.at}, kSession, 2s, key()).answer, CommitAnswer::kCommitted);
}

TEST(MigrateInDoubt, PlainTcpWorksWhenBothSidesAreInsecure) {
  auto w = start_witness(std::nullopt);
  EXPECT_EQ(ask_committed(std::vector<Endpoint>{w.at}, kSession, 2s, std::nullopt).answer, CommitAnswer::kCommitted);
}

TEST(MigrateInDoubt, AStoppedWitnessAnswersNothing) {
  auto w = start_witness();
  w.witness.reset();  // the VM ended: its listener is closed with it
  EXPECT_EQ(ask_committed(std::vector<Endpoint>{w.at}, kSession, 1s, key()).answer, CommitAnswer::kUnknown);
}

}  // namespace
}  // namespace minihv::migrate
