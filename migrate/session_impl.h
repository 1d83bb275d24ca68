// migrate/session_impl.h — the inside of a Session (module-internal; transport.cc and listener.cc).
//
// One io_uring drives every stream: at most one sendmsg (gathering all queued frames) and one recv
// (into the stream's FrameParser, zero-copy) in flight per stream.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "common/fd.h"
#include "common/uring.h"
#include "migrate/transport.h"

namespace minihv::migrate {

using Clock = std::chrono::steady_clock;

struct StreamState {
  StreamState(UniqueFd f, uint16_t i, FrameParser p) : fd(std::move(f)), index(i), parser(std::move(p)) {}
  UniqueFd fd;
  uint16_t index;
  FrameParser parser;
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
  int64_t round_done = -1;  // highest DIRTY_ROUND_END round delivered from this stream
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
  Impl(std::vector<UniqueFd> fds, std::vector<FrameParser> parsers, const TransportOptions& o, uint64_t id,
       std::string peer_name);
  ~Impl();

  Status init();
  Status send(uint16_t stream, Frame frame);
  Status send_round_end(RoundEnd m);
  void count_pages(uint16_t stream, uint32_t pages);
  Status flush();
  Status poll(const FrameHandler& h);
  Status receive(const FrameHandler& h, std::chrono::milliseconds timeout);
  AttachmentSink sink;
  std::pair<uint64_t, double> take_link_sample();

  TransportOptions opt;
  uint64_t session_id;
  std::string peer;
  TransportStats stats;

private:
  void arm();
  Status pump(bool wait, Clock::time_point deadline);
  void complete(uint64_t tag, int32_t res);
  Status wait_for_progress();
  Status deliver(const FrameHandler& h, bool& stop, bool& any);
  // RAW_PAGES: asks the sink where the pages go and fills them from what is buffered; true when
  // the frame is whole (deliver it now), false when the rest arrives by recvmsg.
  Result<bool> begin_attachment(StreamState& s, const FrameView& v);
  void fill_from_buffer(StreamState& s);
  void advance_attachment(StreamState& s, size_t n);
  void arm_send(StreamState& s);
  void arm_recv(StreamState& s);
  bool barrier_reached(uint32_t round) const;
  Status closed_stream() const;
  void account_busy();
  Status die(Status s);

  Uring ring_;
  std::vector<std::unique_ptr<StreamState>> streams_;
  unsigned inflight_ = 0;
  bool delivering_ = false;
  bool closing_ = false;  // the destructor runs: arm no receive
  std::optional<Clock::time_point> busy_since_;
  uint64_t sampled_bytes_ = 0;
  double sampled_seconds_ = 0;
  Status dead_;
  std::optional<uint64_t> corrupt_pages_frame_;
  uint64_t pages_frames_sent_ = 0;
};

}  // namespace minihv::migrate
