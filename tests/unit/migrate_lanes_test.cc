// One thread per stream on both ends (migrate/workers.h, Session's per-stream calls), over real
// loopback sockets: every stream's frames arrive in order, stream 0's round end is handled only
// after every other stream's pages of that round were handled on their own threads, one stream's
// failure ends the others', and the workers hand back the first failure.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <thread>

#include "migrate/frames.h"
#include "migrate/transport.h"
#include "migrate/workers.h"
#include "tests/unit/migrate_test_util.h"

namespace minihv::migrate {
namespace {

using namespace std::chrono_literals;

TEST(StreamWorkers, RunsTheJobOncePerStreamOnItsOwnThread) {
  StreamWorkers w(2, 3, "test");
  ASSERT_EQ(w.count(), 3);
  std::array<std::atomic<int>, 5> runs{};
  std::array<std::thread::id, 5> ids{};
  for (int job = 0; job < 4; ++job) {
    ASSERT_TRUE(w.run([&](uint16_t stream) {
      ++runs[stream];
      ids[stream] = std::this_thread::get_id();
      return Status::ok();
    }));
  }
  EXPECT_EQ(runs[0], 0);
  EXPECT_EQ(runs[1], 0);
  for (uint16_t s = 2; s < 5; ++s) EXPECT_EQ(runs[s], 4) << s;
  EXPECT_NE(ids[2], ids[3]);
  EXPECT_NE(ids[3], ids[4]);
  EXPECT_NE(ids[2], std::this_thread::get_id());
}

TEST(StreamWorkers, AFailureIsReturnedAndTheOthersSeeItCancelled) {
  StreamWorkers w(0, 3, "test");
  std::atomic<int> saw_cancel{0};
  Status st = w.run([&](uint16_t stream) -> Status {
    if (stream == 1) return Status::error("stream 1 broke");
    for (int i = 0; i < 2000 && !w.cancelled(); ++i) std::this_thread::sleep_for(1ms);
    if (w.cancelled()) ++saw_cancel;
    return Status::ok();
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.message(), "stream 1 broke");
  EXPECT_EQ(saw_cancel, 2);
  // The next job starts clean.
  EXPECT_TRUE(w.run([&](uint16_t) { return w.cancelled() ? Status::error("still cancelled") : Status::ok(); }));
}

TEST(StreamWorkers, NoStreamsIsANoOp) {
  StreamWorkers w(1, 0, "test");
  EXPECT_TRUE(w.run([](uint16_t) { return Status::error("must not run"); }));
}

constexpr uint16_t kStreams = 4;
constexpr uint32_t kRounds = 3, kPerStreamPerRound = 25;

// Receiver with one thread per stream. Each stream's handler counts its frames of the current
// round; stream 0's round-end handler records whether every other stream had all of that round's.
struct LaneReceiver {
  std::array<std::vector<uint32_t>, kStreams> tags;
  std::array<std::atomic<uint32_t>, kStreams> handled{};  // PAGES handled per stream, running total
  std::vector<bool> barrier_held;  // per round: the others had all of it (or more) when stream 0's end came
  bool committed = false;
  Status result;

  void run(Listener& l) {
    TransportOptions o;
    o.io_timeout = 10000ms;
    auto s = l.accept(o, 10000ms);
    if (!s) {
      result = s.status();
      return;
    }
    Session& rx = **s;
    auto handler = [&](const FrameView& v) -> Result<Next> {
      const uint16_t k = v.header.stream;
      switch (v.type()) {
        case FrameType::kPages: {
          uint32_t t;
          std::memcpy(&t, v.payload.data(), 4);
          tags[k].push_back(t);
          std::this_thread::sleep_for(100us);  // a slow decoder: the barrier must wait for it
          handled[k].fetch_add(1, std::memory_order_release);
          return Next::kContinue;
        }
        case FrameType::kDirtyRoundEnd: {
          auto r = parse_round_end(v);
          if (!r) return r.status();
          if (k != kControlStream) return r->last ? Next::kStop : Next::kContinue;
          bool all = true;
          for (uint16_t other = 1; other < kStreams; ++other)
            all = all && handled[other].load(std::memory_order_acquire) >= (r->round + 1) * kPerStreamPerRound;
          barrier_held.push_back(all);
          return Next::kContinue;
        }
        case FrameType::kCommit: committed = true; return Next::kStop;
        default: return Status::error("unexpected frame");
      }
    };
    StreamWorkers others(1, kStreams - 1, "test-rx");
    others.start([&](uint16_t stream) {
      Status st = rx.receive_stream(stream, handler, 10000ms);
      if (!st) rx.stop(st);
      return st;
    });
    result = rx.receive_stream(kControlStream, handler, 10000ms);
    if (!result) rx.stop(result);
    Status w = others.wait();
    if (result && !w) result = w;
    if (result) result = rx.send(kControlStream, make_ack());
    if (result) result = rx.flush();
  }
};

TEST(MigrateLanes, EveryStreamOnItsOwnThreadBothEnds) {
  auto l = Listener::listen({"127.0.0.1", 0});
  ASSERT_TRUE(l) << l.message();
  LaneReceiver rx;
  std::thread t([&] { rx.run(*l); });
  TransportOptions o;
  o.streams = kStreams;
  const Endpoint target{"127.0.0.1", l->port()};
  auto s = Session::connect(std::span(&target, 1), o);
  ASSERT_TRUE(s) << s.message();
  Session& tx = **s;
  StreamWorkers senders(0, kStreams, "test-tx");
  for (uint32_t r = 0; r < kRounds; ++r) {
    // Stream 0 sends least and finishes first: its round end must still wait for the others.
    ASSERT_TRUE(senders.run([&](uint16_t k) -> Status {
      const uint32_t n = k == 0 ? 1 : kPerStreamPerRound;
      for (uint32_t i = 0; i < n; ++i) {
        Frame f = tagged_pages_frame(r * 1000 + k * 100 + i, 20'000);
        tx.count_pages(k, f.pages);
        MINIHV_TRY(tx.send(k, std::move(f)));
      }
      return tx.flush_stream(k);
    }));
    ASSERT_TRUE(tx.send_round_end({r, 0, 0, r + 1 == kRounds}));
  }
  ASSERT_TRUE(tx.send(kControlStream, make_commit()));
  ASSERT_TRUE(tx.flush());
  bool acked = false;
  ASSERT_TRUE(tx.receive(
      [&](const FrameView& v) -> Result<Next> {
        acked = v.type() == FrameType::kAck;
        return Next::kStop;
      },
      10000ms));
  t.join();
  ASSERT_TRUE(rx.result) << rx.result.message();
  EXPECT_TRUE(acked);
  EXPECT_TRUE(rx.committed);
  for (uint16_t k = 1; k < kStreams; ++k) {
    std::vector<uint32_t> want;
    for (uint32_t r = 0; r < kRounds; ++r)
      for (uint32_t i = 0; i < kPerStreamPerRound; ++i) want.push_back(r * 1000 + k * 100 + i);
    EXPECT_EQ(rx.tags[k], want) << "stream " << k;
  }
  EXPECT_EQ(rx.barrier_held, std::vector<bool>(kRounds, true));
  EXPECT_EQ(tx.stats().frames_sent, kStreams /*open*/ + (kStreams - 1) * kRounds * kPerStreamPerRound + kRounds +
                                        kRounds * kStreams + 1);
}

TEST(MigrateLanes, OneStreamsFailureEndsTheOthers) {
  auto l = Listener::listen({"127.0.0.1", 0});
  ASSERT_TRUE(l) << l.message();
  Status stream0, stream2;
  std::thread t([&] {
    TransportOptions o;
    auto s = l->accept(o, 10000ms);
    if (!s) {
      stream0 = s.status();
      return;
    }
    Session& rx = **s;
    StreamWorkers others(1, 2, "test-rx");
    others.start([&](uint16_t stream) {
      Status st = rx.receive_stream(
          stream,
          [&](const FrameView&) -> Result<Next> {
            if (stream == 2) return Status::error("stream 2 cannot decode that");
            return Next::kContinue;
          },
          30000ms);
      if (!st) rx.stop(st);
      return st;
    });
    // Stream 0 hears nothing: only stop() can end its wait before 30 s.
    stream0 = rx.receive_stream(kControlStream, [](const FrameView&) -> Result<Next> { return Next::kContinue; },
                                30000ms);
    stream2 = others.wait();
  });
  TransportOptions o;
  o.streams = 3;
  const Endpoint target{"127.0.0.1", l->port()};
  auto s = Session::connect(std::span(&target, 1), o);
  ASSERT_TRUE(s) << s.message();
  ASSERT_TRUE((*s)->send(2, tagged_pages_frame(7, 4096)));
  ASSERT_TRUE((*s)->flush());
  t.join();
  ASSERT_FALSE(stream0);
  EXPECT_EQ(stream0.message(), "stream 2 cannot decode that");
  ASSERT_FALSE(stream2);
  EXPECT_EQ(stream2.message(), "stream 2 cannot decode that");
}

}  // namespace
}  // namespace minihv::migrate
