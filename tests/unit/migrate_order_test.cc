// ReceiveOrder: the destination accepts the one legal frame sequence and refuses everything else
// with "protocol error: <FRAME> <when>".
#include "migrate/receive_order.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace minihv::migrate {
namespace {

using Phase = ReceiveOrder::Phase;

constexpr uint16_t kStreams = 3;

Frame pages() {
  FrameBuilder b;
  b.begin(FrameType::kPages);
  return b.finish();
}

Frame round_end(uint32_t round, bool last = false) { return make_round_end({round, 0, 0, last}); }

// ReceiveOrder reads only the STATE flags; the StateAssembler checks offsets and totals.
Frame state_chunk(bool last) {
  FrameBuilder b;
  b.begin(FrameType::kState, last ? FrameFlag::kLast : 0);
  b.put_u64(0);
  b.put_u64(0);
  return b.finish();
}

Frame verify() { return make_verify({}); }

class MigrateOrder : public ::testing::Test {
protected:
  // Delivers `f` as the transport would: header decoded, stamped with the stream it came on.
  Status feed(Frame f, uint16_t stream = kControlStream) {
    FrameView v;
    v.header = decode_header(f.bytes.data());
    v.header.stream = stream;
    v.payload = {f.bytes.data() + kHeaderSize, f.payload_size()};
    return order_.accept(v);
  }
  void ok(Frame f, uint16_t stream = kControlStream) {
    Status s = feed(std::move(f), stream);
    ASSERT_TRUE(s) << s.message();
  }
  void refused(Frame f, const std::string& message, uint16_t stream = kControlStream) {
    const Phase before = order_.phase();
    Status s = feed(std::move(f), stream);
    ASSERT_FALSE(s) << "accepted: " << message;
    EXPECT_EQ(s.message(), message);
    EXPECT_EQ(order_.phase(), before) << "a refused frame moved the phase: " << message;
  }
  // One full round on every stream, stream 0 last (as Session::send_round_end sends it).
  void round(uint32_t r, bool last = false) {
    for (uint16_t s = kStreams; s-- > 0;) {
      ok(pages(), s);
      ok(round_end(r, last), s);
    }
  }

  void to_rounds() {
    ok(make_hello({"{}", "null"}));
    order_.hello_answered();
  }
  void to_final_round() {
    to_rounds();
    round(0);
    round(1, true);
  }
  void to_state_done() {
    to_final_round();
    ok(state_chunk(false));
    ok(state_chunk(true));
  }

  ReceiveOrder order_{kStreams};
};

TEST_F(MigrateOrder, LegalSequenceWithVerify) {
  EXPECT_EQ(order_.phase(), Phase::kAwaitHello);
  to_rounds();
  EXPECT_EQ(order_.phase(), Phase::kRounds);
  round(0);
  round(1);
  round(2, true);
  EXPECT_EQ(order_.phase(), Phase::kAwaitState);
  ok(state_chunk(false));
  EXPECT_EQ(order_.phase(), Phase::kAwaitState);
  ok(state_chunk(true));
  EXPECT_EQ(order_.phase(), Phase::kStateDone);
  ok(verify());
  EXPECT_EQ(order_.phase(), Phase::kVerified);
  ok(make_commit());
  EXPECT_EQ(order_.phase(), Phase::kCommitted);
}

TEST_F(MigrateOrder, LegalSequenceWithoutVerifyOrPages) {
  to_rounds();
  ok(round_end(0, true), 2);
  ok(round_end(0, true), 1);
  ok(round_end(0, true));
  ok(state_chunk(true));
  ok(make_commit());
  EXPECT_EQ(order_.phase(), Phase::kCommitted);
}

// Between HELLO and the destination's answer its guest memory may not exist yet (an incoming VM
// sized from HELLO): a page then, on any stream, is refused, not written.
TEST_F(MigrateOrder, NothingButAbortBeforeTheHelloIsAnswered) {
  ok(make_hello({"{}", "null"}));
  EXPECT_EQ(order_.phase(), Phase::kAnsweringHello);
  refused(pages(), "protocol error: PAGES before HELLO_REPLY", 1);
  refused(pages(), "protocol error: PAGES before HELLO_REPLY");
  refused(round_end(0), "protocol error: DIRTY_ROUND_END before HELLO_REPLY", 2);
  refused(make_hello({"{}", "null"}), "protocol error: HELLO a second time");
  order_.hello_answered();
  EXPECT_EQ(order_.phase(), Phase::kRounds);
  ok(pages(), 1);
  ok(make_abort({"bye"}), 2);
  EXPECT_EQ(order_.phase(), Phase::kAborted);
}

TEST_F(MigrateOrder, RoundsMaySkipNumbersAndStreamsInterleave) {
  to_rounds();
  ok(round_end(0), 1);
  ok(pages(), 1);  // stream 1 runs ahead of stream 0: the transport allows it
  ok(round_end(0));
  ok(round_end(4), 1);
  ok(round_end(4));
  EXPECT_EQ(order_.phase(), Phase::kRounds);
}

TEST_F(MigrateOrder, AbortIsAcceptedInEveryPhase) {
  const std::vector<std::function<void()>> setups = {
      [] {},
      [&] { to_rounds(); },
      [&] { to_final_round(); },
      [&] { to_state_done(); },
      [&] { to_state_done(); ok(verify()); },
  };
  for (size_t i = 0; i < setups.size(); ++i) {
    SCOPED_TRACE(i);
    order_ = ReceiveOrder(kStreams);
    setups[i]();
    ok(make_abort({"operator said so"}), static_cast<uint16_t>(i % kStreams));  // any stream
    EXPECT_EQ(order_.phase(), Phase::kAborted);
    refused(pages(), "protocol error: PAGES after ABORT");
  }
}

TEST_F(MigrateOrder, NothingBeforeHello) {
  refused(pages(), "protocol error: PAGES before HELLO", 1);
  refused(round_end(0), "protocol error: DIRTY_ROUND_END before HELLO");
  refused(state_chunk(true), "protocol error: STATE before HELLO");
  refused(verify(), "protocol error: VERIFY before HELLO");
  refused(make_commit(), "protocol error: COMMIT before HELLO");
}

TEST_F(MigrateOrder, SecondHello) {
  to_rounds();
  refused(make_hello({"{}", "null"}), "protocol error: HELLO a second time");
  round(0, true);  // the rounds go on
  EXPECT_EQ(order_.phase(), Phase::kAwaitState);
}

TEST_F(MigrateOrder, PagesAfterTheFinalRound) {
  to_final_round();
  refused(pages(), "protocol error: PAGES after the final round", 1);
  refused(pages(), "protocol error: PAGES after the final round");
  ok(state_chunk(true));
  refused(pages(), "protocol error: PAGES after the final round", 2);
}

TEST_F(MigrateOrder, PagesOnAStreamAfterItsFinalRound) {
  to_rounds();
  ok(round_end(0, true), 2);
  refused(pages(), "protocol error: PAGES on stream 2 after its final round", 2);
  refused(round_end(1), "protocol error: DIRTY_ROUND_END on stream 2 after its final round", 2);
  ok(pages(), 1);  // the others are still in the round
}

TEST_F(MigrateOrder, RoundEndAfterTheFinalRound) {
  to_final_round();
  refused(round_end(2), "protocol error: DIRTY_ROUND_END after the final round", 1);
  refused(round_end(2, true), "protocol error: DIRTY_ROUND_END after the final round");
}

TEST_F(MigrateOrder, RoundsGoingBackwards) {
  to_rounds();
  ok(round_end(5));
  refused(round_end(3), "protocol error: DIRTY_ROUND_END round 3 after round 5 on stream 0 (rounds must go up)");
  refused(round_end(5), "protocol error: DIRTY_ROUND_END round 5 after round 5 on stream 0 (rounds must go up)");
  refused(round_end(4, true), "protocol error: DIRTY_ROUND_END round 4 after round 5 on stream 0 (rounds must go up)");
  ok(round_end(7), 1);
  refused(round_end(6), "protocol error: DIRTY_ROUND_END round 6 after round 7 on stream 1 (rounds must go up)", 1);
}

TEST_F(MigrateOrder, StateBeforeTheFinalRound) {
  to_rounds();
  refused(state_chunk(false), "protocol error: STATE before the final round");
  round(0);
  refused(state_chunk(true), "protocol error: STATE before the final round");
  // A data stream's final round end is not the switchover: only stream 0's is.
  ok(round_end(1, true), 1);
  refused(state_chunk(true), "protocol error: STATE before the final round");
}

TEST_F(MigrateOrder, StateAfterTheCompleteState) {
  to_state_done();
  refused(state_chunk(false), "protocol error: STATE after the complete machine state");
  ok(verify());
  refused(state_chunk(true), "protocol error: STATE after the complete machine state");
}

TEST_F(MigrateOrder, CommitBeforeTheCompleteState) {
  to_rounds();
  refused(make_commit(), "protocol error: COMMIT before the complete machine state");
  round(0, true);
  refused(make_commit(), "protocol error: COMMIT before the complete machine state");
  ok(state_chunk(false));
  refused(make_commit(), "protocol error: COMMIT before the complete machine state");
}

TEST_F(MigrateOrder, VerifyBeforeTheState) {
  to_rounds();
  refused(verify(), "protocol error: VERIFY before the complete machine state");
  round(0, true);
  refused(verify(), "protocol error: VERIFY before the complete machine state");
  ok(state_chunk(false));
  refused(verify(), "protocol error: VERIFY before the complete machine state");
}

TEST_F(MigrateOrder, VerifyOnlyOnce) {
  to_state_done();
  ok(verify());
  refused(verify(), "protocol error: VERIFY a second time");
  ok(make_commit());
}

TEST_F(MigrateOrder, NothingAfterCommit) {
  to_state_done();
  ok(make_commit());
  refused(make_commit(), "protocol error: COMMIT after COMMIT");
  refused(pages(), "protocol error: PAGES after COMMIT", 1);
  refused(make_hello({"{}", "null"}), "protocol error: HELLO after COMMIT");
}

TEST_F(MigrateOrder, TheDestinationsOwnFramesAreRefusedInEveryPhase) {
  const std::vector<std::function<void()>> setups = {
      [] {}, [&] { to_rounds(); }, [&] { to_final_round(); }, [&] { to_state_done(); }};
  for (size_t i = 0; i < setups.size(); ++i) {
    SCOPED_TRACE(i);
    order_ = ReceiveOrder(kStreams);
    setups[i]();
    const std::string by_dest = " sent to the destination (only the destination sends it)";
    refused(make_hello_reply({true, ""}), "protocol error: HELLO_REPLY" + by_dest);
    refused(make_verify_reply({}), "protocol error: VERIFY_REPLY" + by_dest);
    refused(make_ack(), "protocol error: ACK" + by_dest);
    refused(make_stream_open({1, 0, kStreams}), "protocol error: STREAM_OPEN after the streams were opened");
    refused(make_query_reply({1, CommitAnswer::kCommitted}), "protocol error: QUERY_REPLY" + by_dest);
    refused(make_query({1}), "protocol error: QUERY inside a migration session (it opens a connection of its own)");
  }
}

TEST_F(MigrateOrder, ControlFramesOnlyOnTheControlStream) {
  refused(make_hello({"{}", "null"}), "protocol error: HELLO on stream 1 (only the control stream 0 carries it)", 1);
  to_final_round();
  refused(state_chunk(true), "protocol error: STATE on stream 2 (only the control stream 0 carries it)", 2);
  ok(state_chunk(true));
  refused(verify(), "protocol error: VERIFY on stream 1 (only the control stream 0 carries it)", 1);
  refused(make_commit(), "protocol error: COMMIT on stream 1 (only the control stream 0 carries it)", 1);
}

TEST_F(MigrateOrder, StreamsBeyondTheSession) {
  to_rounds();
  refused(pages(), "protocol error: PAGES on stream 3 of a 3-stream session", 3);
  refused(make_abort({"x"}), "protocol error: ABORT on stream 200 of a 3-stream session", 200);
}

TEST_F(MigrateOrder, UnreadableRoundEnd) {
  to_rounds();
  FrameBuilder b;
  b.begin(FrameType::kDirtyRoundEnd);
  b.put_u32(1);
  Status s = feed(b.finish());
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("DIRTY_ROUND_END"), std::string::npos) << s.message();
  EXPECT_EQ(order_.phase(), Phase::kRounds);
}

}  // namespace
}  // namespace minihv::migrate
