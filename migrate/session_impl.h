// migrate/session_impl.h — the inside of a Session (module-internal; transport.cc and listener.cc).
//
// Every stream is a lane of its own: its channel (the TCP socket, or a TLS relay's socketpair end),
// its io_uring, its parser and send queue, its stats.
// At most one sendmsg (gathering all queued frames) and one recv (into the stream's FrameParser, or
// straight into guest memory for a RAW_PAGES attachment) are in flight per stream. A lane is driven
// by one thread at a time, so N threads can drive N lanes at once (send, flush_stream,
// receive_stream); the calls over every lane (flush, poll, receive, send_round_end) wait on all
// rings at once through one eventfd registered with each of them.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/fd.h"
#include "common/uring.h"
#include "migrate/stream_channel.h"
#include "migrate/transport.h"

namespace minihv::migrate {

using Clock = std::chrono::steady_clock;

struct StreamState {
  StreamState(StreamChannel c, uint16_t i, FrameParser p) : ch(std::move(c)), index(i), parser(std::move(p)) {}
  StreamChannel ch;  // its io_uring sends on ch.send_fd(), receives on ch.recv_fd()
  uint16_t index;
  FrameParser parser;
  Uring ring;
  unsigned inflight = 0;
  uint64_t completions = 0;  // reaped so far (the all-lanes wait counts them as progress)
  Status dead;  // a send-side failure of this stream: final for it
  TransportStats stats;
  std::optional<Clock::time_point> busy_since;
  uint64_t sampled_bytes = 0;
  double sampled_seconds = 0;
  // Sending: sealed frames waiting or in flight; the front one (bytes, then its attachment) may be
  // partly sent.
  std::deque<Frame> queue;
  size_t front_sent = 0, queued_bytes = 0;
  uint64_t next_sequence = 0;
  uint32_t round_pages = 0;
  bool send_busy = false, recv_busy = false;
  std::vector<iovec> iov;
  msghdr msg{};
  Clock::time_point last_progress{};
  // Receiving: set once the peer closed or reset this stream; reported when frames are awaited.
  bool recv_closed = false;
  Status closed_reason;
  bool delivering = false;  // a handler looks at a frame in the parser's buffer: post no recv into it
  // Highest DIRTY_ROUND_END round handled from this stream (written by the lane's thread after the
  // handler returned, read by stream 0's for the barrier).
  std::atomic<int64_t> round_done{-1};
  std::optional<FrameView> held;  // stream 0's DIRTY_ROUND_END waiting for the barrier
  uint32_t held_round = 0;
  // A RAW_PAGES frame whose pages are arriving straight into guest memory (the stream's other
  // frames wait); `attach` the parts still to fill, recv_direct when a recvmsg into them is posted.
  std::optional<FrameView> attaching;
  std::vector<iovec> attach;
  size_t attach_at = 0;
  bool recv_direct = false;
  msghdr recv_msg{};
};

struct Session::Impl {
  Impl(std::vector<StreamChannel> channels, std::vector<FrameParser> parsers, const TransportOptions& o, uint64_t id,
       std::string peer_name);
  ~Impl();

  Status init();
  Status send(uint16_t stream, Frame frame);
  Status send_round_end(RoundEnd m);
  void count_pages(uint16_t stream, uint32_t pages);
  Status flush();
  Status flush_stream(uint16_t stream);
  Status poll(const FrameHandler& h);
  Status receive(const FrameHandler& h, std::chrono::milliseconds timeout);
  Status receive_remaining(const FrameHandler& handler, std::chrono::milliseconds timeout);
  Status receive_stream(uint16_t stream, const FrameHandler& h, std::chrono::milliseconds timeout);
  void stop(Status why);
  TransportStats stats() const;
  std::pair<uint64_t, double> take_link_sample(uint16_t stream);
  AttachmentSink sink;

  TransportOptions opt;
  uint64_t session_id;
  std::string peer;
  double handshake_ms = 0;  // the slowest stream's TLS handshake (0: plain TCP)
  std::string tls_text() const;

private:
  void arm(StreamState& s);
  // One lane: submits, and with `wait` waits on its ring until something completes or `deadline`.
  Status pump(StreamState& s, bool wait, Clock::time_point deadline);
  // Every lane: submits all, reaps all; with `wait` and nothing completed since it drained the
  // eventfd (wherever reaped), waits on the eventfd.
  Status pump_all(bool wait, Clock::time_point deadline);
  uint64_t completions() const;  // every lane's
  unsigned reap(StreamState& s);
  void complete(StreamState& s, uint64_t tag, int32_t res);
  Status wait_for_progress(StreamState& s);
  // Hands s's ready frames to the handler, at most `max_frames`; `any` when one was handed.
  Status deliver_lane(StreamState& s, const FrameHandler& h, bool& stop, bool& any, size_t max_frames);
  Status deliver_all(const FrameHandler& h, bool& stop, bool& any);
  Status end_of_stream(const StreamState& s) const;
  Status end_of_session() const;
  // RAW_PAGES: asks the sink where the pages go and fills them from what is buffered; true when
  // the frame is whole (deliver it now), false when the rest arrives by recvmsg.
  Result<bool> begin_attachment(StreamState& s, const FrameView& v);
  void fill_from_buffer(StreamState& s);
  void advance_attachment(StreamState& s, size_t n);
  void arm_send(StreamState& s);
  void arm_recv(StreamState& s);
  void round_handled(StreamState& s, uint32_t round);
  bool barrier_reached(uint32_t round) const;
  Status stopped() const;
  Status closed_stream() const;
  // closed_stream(), once stream 0 has closed too or `grace` (set at the first closed stream) ran out.
  Status closed_stream_settled(std::optional<Clock::time_point>& grace) const;
  void account_busy(StreamState& s);
  Status die(StreamState& s, Status st);

  std::vector<std::unique_ptr<StreamState>> streams_;
  UniqueFd wake_;            // eventfd signalled by every lane's ring (the all-lanes waits)
  bool closing_ = false;     // the destructor runs: arm no receive
  // Across lanes: the barrier's wake-ups and stop().
  mutable std::mutex mu_;
  std::condition_variable progress_cv_;
  std::atomic<bool> stopping_{false};
  Status stop_reason_;  // guarded by mu_
  std::optional<uint64_t> corrupt_pages_frame_;
  std::atomic<uint64_t> pages_frames_sent_{0};
};

}  // namespace minihv::migrate
