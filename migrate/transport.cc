// The io_uring data path of a Session: queued gathering sends, zero-copy receives into each stream's
// parser, the round barrier on stream 0, and dead-peer detection. Set-up: net.cc and listener.cc.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/net.h"
#include "migrate/session_impl.h"
#include "migrate/test_hooks.h"

namespace minihv::migrate {

namespace {

enum Op : uint64_t { kSendOp = 1, kRecvOp = 2 };
// A lane has at most one send and one receive in flight.
constexpr unsigned kLaneRingEntries = 4;
// One sendmsg gathers at most this many pieces (frames and their attached pages); IOV_MAX is 1024.
constexpr size_t kMaxIov = 1024;
// A recv is posted only with at least this much room (less means frames wait to be delivered).
constexpr size_t kMinRecvRoom = 64u << 10;
// Frames delivered from one stream before the others get a turn.
constexpr int kDeliverBurst = 8;
// When one stream closes, how long stream 0 — which carries the peer's ABORT and its reason — gets
// to deliver what it still has before the closed stream is the answer.
constexpr auto kCloseGrace = std::chrono::milliseconds(500);

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

__kernel_timespec timespec_until(Clock::time_point deadline) {
  auto left = std::max(Clock::duration::zero(), deadline - Clock::now());
  __kernel_timespec ts{};
  ts.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(left).count();
  ts.tv_nsec = (left - std::chrono::seconds(ts.tv_sec)).count();
  return ts;
}

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

}  // namespace

Session::Impl::Impl(std::vector<StreamChannel> channels, std::vector<FrameParser> parsers, const TransportOptions& o,
                    uint64_t id, std::string peer_name)
    : opt(o), session_id(id), peer(std::move(peer_name)), corrupt_pages_frame_(corrupt_pages_frame_from_env()) {
  for (size_t i = 0; i < channels.size(); ++i) {
    net::tune_stream(channels[i].tcp_fd(), opt.io_timeout);
    streams_.push_back(
        std::make_unique<StreamState>(std::move(channels[i]), static_cast<uint16_t>(i), std::move(parsers[i])));
  }
}

std::string Session::Impl::tls_text() const {
  const std::string& t = streams_.empty() ? std::string() : streams_[0]->ch.tls();
  return t.empty() ? "none (plain TCP, --insecure)" : t;
}

Session::Impl::~Impl() {
  // Cancel what is in flight before the buffers it points into go away; post nothing new.
  closing_ = true;
  for (auto& s : streams_) s->ch.close_lane();
  auto give_up = Clock::now() + std::chrono::seconds(2);
  for (auto& s : streams_)
    while (s->inflight > 0 && s->ring.initialized() && Clock::now() < give_up)
      if (!pump(*s, true, give_up)) break;
}

Status Session::Impl::init() {
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return Status::from_errno("eventfd");
  for (auto& s : streams_) {
    MINIHV_TRY(s->ring.init(kLaneRingEntries));
    if (int rc = io_uring_register_eventfd(s->ring.raw(), wake_.get()); rc < 0)
      return Status::from_errno("io_uring_register_eventfd", -rc);
  }
  return Status::ok();
}

Status Session::Impl::die(StreamState& s, Status st) {
  if (s.dead.is_ok()) s.dead = st;
  return s.dead;
}

void Session::Impl::arm(StreamState& s) {
  // (A full ring leaves a stream unarmed: the next pump arms it; at most two are in flight.)
  arm_send(s);
  arm_recv(s);
}

void Session::Impl::arm_send(StreamState& s) {
  if (s.send_busy || s.queue.empty() || !s.dead.is_ok()) return;
  // One sendmsg gathers queued frames and their attachments (pages in guest memory) in order,
  // from where the front frame's last send stopped.
  s.iov.clear();
  size_t skip = s.front_sent;
  auto add = [&](const uint8_t* p, size_t n) {
    if (skip >= n) {
      skip -= n;
      return;
    }
    s.iov.push_back({const_cast<uint8_t*>(p) + skip, n - skip});
    skip = 0;
  };
  for (auto it = s.queue.begin(); it != s.queue.end() && s.iov.size() + 1 < kMaxIov; ++it) {
    add(it->bytes.data(), it->bytes.size());
    for (size_t i = 0; i < it->attachment.size() && s.iov.size() < kMaxIov; ++i) add(it->attachment[i], kPageSize);
  }
  s.msg = {};
  s.msg.msg_iov = s.iov.data();
  s.msg.msg_iovlen = s.iov.size();
  io_uring_sqe* sqe = s.ring.sqe();
  if (!sqe) return;
  io_uring_prep_sendmsg(sqe, s.ch.send_fd(), &s.msg, s.ch.send_flags());
  io_uring_sqe_set_data64(sqe, kSendOp);
  s.send_busy = true;
  ++s.inflight;
}

void Session::Impl::arm_recv(StreamState& s) {
  // No recv while delivering (prepare() may move the bytes a handler is looking at) or while
  // stream 0 holds a frame for the barrier.
  if (s.recv_busy || s.recv_closed || s.delivering || s.held || closing_) return;
  if (s.attaching) {
    // Straight into guest memory — once deliver() has copied what the buffer already holds.
    if (s.attach_at >= s.attach.size() || !s.parser.attachment_buffered().empty()) return;
    s.recv_msg = {};
    s.recv_msg.msg_iov = &s.attach[s.attach_at];
    s.recv_msg.msg_iovlen = std::min(s.attach.size() - s.attach_at, kMaxIov);
    io_uring_sqe* sqe = s.ring.sqe();
    if (!sqe) return;
    io_uring_prep_recvmsg(sqe, s.ch.recv_fd(), &s.recv_msg, 0);
    io_uring_sqe_set_data64(sqe, kRecvOp);
    s.recv_busy = s.recv_direct = true;
    ++s.inflight;
    return;
  }
  auto room = s.parser.prepare(kMinRecvRoom);
  if (room.size() < kMinRecvRoom) return;
  // Up to the end of the frame being received, no further: what follows may be a RAW_PAGES
  // attachment, which goes straight into guest memory instead (a whole frame buffered: the next
  // frame's header).
  const size_t want = s.parser.bytes_to_frame_end();
  io_uring_sqe* sqe = s.ring.sqe();
  if (!sqe) return;
  io_uring_prep_recv(sqe, s.ch.recv_fd(), room.data(), std::min(room.size(), want ? want : kHeaderSize), 0);
  io_uring_sqe_set_data64(sqe, kRecvOp);
  s.recv_busy = true;
  ++s.inflight;
}

void Session::Impl::advance_attachment(StreamState& s, size_t n) {
  while (n > 0 && s.attach_at < s.attach.size()) {
    iovec& v = s.attach[s.attach_at];
    const size_t take = std::min(n, v.iov_len);
    v.iov_base = static_cast<uint8_t*>(v.iov_base) + take;
    v.iov_len -= take;
    n -= take;
    if (v.iov_len == 0) ++s.attach_at;
  }
}

void Session::Impl::fill_from_buffer(StreamState& s) {
  auto buffered = s.parser.attachment_buffered();
  size_t off = 0;
  while (off < buffered.size() && s.attach_at < s.attach.size()) {
    const iovec& v = s.attach[s.attach_at];
    const size_t take = std::min(v.iov_len, buffered.size() - off);
    std::memcpy(v.iov_base, buffered.data() + off, take);
    advance_attachment(s, take);
    off += take;
  }
  s.parser.take_buffered_attachment(off);
}

Result<bool> Session::Impl::begin_attachment(StreamState& s, const FrameView& v) {
  if (!sink) return Status::error("protocol error: RAW_PAGES on a session that takes none");
  auto pages = sink(v);
  if (!pages) return pages.status();
  if (pages->size() * kPageSize != v.attachment_bytes)
    return Status::error("RAW_PAGES: the receiver placed " + std::to_string(pages->size()) + " pages of " +
                         std::to_string(v.attachment_bytes / kPageSize));
  s.attach.clear();
  for (uint8_t* p : *pages) s.attach.push_back({p, kPageSize});
  s.attach_at = 0;
  fill_from_buffer(s);
  return s.attach_at == s.attach.size();
}

void Session::Impl::complete(StreamState& s, uint64_t t, int32_t res) {
  --s.inflight;
  if (t == kSendOp) {
    s.send_busy = false;
    if (res < 0) {
      (void)die(s, Status::from_errno("stream " + std::to_string(s.index) + " to " + peer + ": send", -res));
      return;
    }
    size_t n = static_cast<size_t>(res);
    s.stats.bytes_sent += n;
    if (n) s.last_progress = Clock::now();
    while (n > 0) {
      size_t left = s.queue.front().wire_size() - s.front_sent;
      if (n < left) {
        s.front_sent += n;
        break;
      }
      n -= left;
      s.queued_bytes -= s.queue.front().wire_size();
      s.queue.pop_front();
      s.front_sent = 0;
    }
    return;
  }
  s.recv_busy = false;
  const bool direct = std::exchange(s.recv_direct, false);
  if (res > 0) {
    if (direct) {  // pages of a RAW_PAGES attachment, in guest memory already
      advance_attachment(s, static_cast<size_t>(res));
      s.parser.attachment_received_elsewhere(static_cast<size_t>(res));
      s.stats.bytes_received_in_place += static_cast<uint64_t>(res);
    } else {
      s.parser.commit(static_cast<size_t>(res));
    }
    s.stats.bytes_received += static_cast<uint64_t>(res);
  } else if (!s.recv_closed) {
    s.recv_closed = true;
    s.closed_reason = res == 0 ? Status::error("peer " + peer + " closed stream " + std::to_string(s.index))
                               : Status::from_errno("stream " + std::to_string(s.index) + " from " + peer +
                                                        ": receive", -res);
    if (std::string why = s.ch.relay_error(); !why.empty())
      s.closed_reason = Status::error(s.closed_reason.message() + " (" + why + ")");
  }
}

void Session::Impl::account_busy(StreamState& s) {
  auto now = Clock::now();
  if (!s.queue.empty() && !s.busy_since) s.busy_since = now;
  if (s.queue.empty() && s.busy_since) {
    s.stats.busy_seconds += seconds(now - *s.busy_since);
    s.busy_since.reset();
  }
}

unsigned Session::Impl::reap(StreamState& s) {
  unsigned n = s.ring.reap([&](uint64_t t, int32_t res) { complete(s, t, res); });
  s.completions += n;
  account_busy(s);
  return n;
}

Status Session::Impl::pump(StreamState& s, bool wait, Clock::time_point deadline) {
  arm(s);
  if (s.inflight == 0) wait = false;
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts = timespec_until(deadline);
  int rc = wait ? io_uring_submit_and_wait_timeout(s.ring.raw(), &cqe, 1, &ts, nullptr) : io_uring_submit(s.ring.raw());
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
    return die(s, Status::from_errno("io_uring_enter", -rc));
  reap(s);
  return s.dead;
}

uint64_t Session::Impl::completions() const {
  uint64_t n = 0;
  for (const auto& s : streams_) n += s->completions;
  return n;
}

Status Session::Impl::pump_all(bool wait, Clock::time_point deadline) {
  uint64_t drained;
  while (::read(wake_.get(), &drained, sizeof drained) > 0) {
  }
  // Whatever completes from here on, reaped by pump() or below, is progress: a completion posted
  // before the drain took its wake-up with it, so waiting for one would sleep until `deadline`
  // (with a frame half read: its header comes by one receive, the rest by the next).
  const uint64_t before = completions();
  unsigned inflight = 0;
  for (auto& s : streams_) {
    MINIHV_TRY(pump(*s, false, deadline));
    inflight += s->inflight;
  }
  for (auto& s : streams_) reap(*s);
  if (!wait || completions() != before || inflight == 0) return Status::ok();
  pollfd p{wake_.get(), POLLIN, 0};
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (::poll(&p, 1, static_cast<int>(std::clamp<int64_t>(left + 1, 0, INT32_MAX))) < 0 && errno != EINTR)
    return Status::from_errno("poll");
  for (auto& s : streams_) reap(*s);
  return Status::ok();
}

Status Session::Impl::wait_for_progress(StreamState& s) {
  MINIHV_TRY(pump(s, true, Clock::now() + opt.io_timeout));
  if (!s.queue.empty() && Clock::now() - s.last_progress > opt.io_timeout)
    return die(s, Status::error("stream " + std::to_string(s.index) + " to " + peer + ": no data accepted for " +
                                ms_text(opt.io_timeout) + " (peer dead or stuck)"));
  return Status::ok();
}

Status Session::Impl::send(uint16_t stream, Frame frame) {
  if (stream >= streams_.size())
    return Status::error("send on stream " + std::to_string(stream) + " of " + std::to_string(streams_.size()));
  StreamState& s = *streams_[stream];
  MINIHV_TRY(s.dead);
  const bool pages = frame.type() == FrameType::kPages;
  seal(frame, stream, s.next_sequence++);
  if (pages && corrupt_pages_frame_ && ++pages_frames_sent_ == *corrupt_pages_frame_ && frame.payload_size() > 0)
    frame.bytes[kHeaderSize + frame.payload_size() / 2] ^= 0x5A;  // test hook: see test_hooks.h
  if (s.queue.empty()) s.last_progress = Clock::now();
  if (!s.busy_since) s.busy_since = Clock::now();
  s.queued_bytes += frame.wire_size();
  s.queue.push_back(std::move(frame));
  ++s.stats.frames_sent;
  MINIHV_TRY(pump(s, false, Clock::now()));
  while (s.queued_bytes > opt.max_queued_bytes) MINIHV_TRY(wait_for_progress(s));
  return Status::ok();
}

Status Session::Impl::send_round_end(RoundEnd m) {
  for (size_t i = streams_.size(); i-- > 0;) {
    m.pages = streams_[i]->round_pages;
    streams_[i]->round_pages = 0;
    MINIHV_TRY(send(static_cast<uint16_t>(i), make_round_end(m)));
  }
  return Status::ok();
}

void Session::Impl::count_pages(uint16_t stream, uint32_t pages) {
  if (stream < streams_.size()) streams_[stream]->round_pages += pages;
}

Status Session::Impl::flush_stream(uint16_t stream) {
  if (stream >= streams_.size()) return Status::error("flush of stream " + std::to_string(stream));
  StreamState& s = *streams_[stream];
  MINIHV_TRY(s.dead);
  while (!s.queue.empty()) MINIHV_TRY(wait_for_progress(s));
  return Status::ok();
}

Status Session::Impl::flush() {
  for (uint16_t i = 0; i < streams_.size(); ++i) MINIHV_TRY(flush_stream(i));
  return Status::ok();
}

void Session::Impl::round_handled(StreamState& s, uint32_t round) {
  if (static_cast<int64_t>(round) <= s.round_done.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(mu_);
    s.round_done.store(round, std::memory_order_release);
  }
  progress_cv_.notify_all();
}

bool Session::Impl::barrier_reached(uint32_t round) const {
  for (size_t i = 1; i < streams_.size(); ++i)
    if (streams_[i]->round_done.load(std::memory_order_acquire) < static_cast<int64_t>(round)) return false;
  return true;
}

void Session::Impl::stop(Status why) {
  {
    std::lock_guard lock(mu_);
    if (stopping_.load()) return;
    stop_reason_ = why.is_ok() ? Status::error("the session was stopped") : why;
    stopping_.store(true);
  }
  progress_cv_.notify_all();
}

Status Session::Impl::stopped() const {
  if (!stopping_.load()) return Status::ok();
  std::lock_guard lock(mu_);
  return stop_reason_;
}

Status Session::Impl::closed_stream() const {
  for (auto& s : streams_)
    if (s->recv_closed) return s->closed_reason;
  return Status::ok();
}

Status Session::Impl::closed_stream_settled(std::optional<Clock::time_point>& grace) const {
  Status closed = closed_stream();
  if (closed.is_ok() || streams_[kControlStream]->recv_closed) return closed;
  if (!grace) grace = Clock::now() + kCloseGrace;  // a peer giving up closes every stream: stream 0 may still say why
  return Clock::now() >= *grace ? closed : Status::ok();
}

Status Session::Impl::deliver_lane(StreamState& s, const FrameHandler& handler, bool& stop, bool& any,
                                   size_t max_frames) {
  s.delivering = true;
  struct Guard {
    bool& flag;
    ~Guard() { flag = false; }
  } guard{s.delivering};
  auto hand = [&](const FrameView& v) -> Status {
    any = true;
    ++s.stats.frames_received;
    auto r = handler(v);
    if (!r) return r.status();
    stop = *r == Next::kStop;
    return Status::ok();
  };
  for (size_t handed = 0; handed < max_frames && !stop; ++handed) {
    if (s.attaching) {
      fill_from_buffer(s);  // a recv into the buffer may have brought some of its pages
      if (s.attach_at < s.attach.size()) break;  // the rest is arriving
      FrameView v = *s.attaching;
      s.attaching.reset();
      MINIHV_TRY(hand(v));
      continue;
    }
    if (s.held) {
      if (!barrier_reached(s.held_round)) break;
      FrameView v = *s.held;
      s.held.reset();
      MINIHV_TRY(hand(v));
      round_handled(s, s.held_round);
      continue;
    }
    auto next = s.parser.next();
    if (!next) return next.status().context("from " + peer);
    if (!*next) break;
    const FrameView& v = **next;
    if (v.type() == FrameType::kStreamOpen)
      return Status::error("protocol error: STREAM_OPEN on open stream " + std::to_string(s.index));
    std::optional<uint32_t> round_end;
    if (v.type() == FrameType::kDirtyRoundEnd) {
      auto re = parse_round_end(v);
      if (!re) return re.status();
      if (s.index == kControlStream && !barrier_reached(re->round)) {
        s.held = v;
        s.held_round = re->round;
        break;
      }
      round_end = re->round;
    }
    if (v.type() == FrameType::kRawPages) {
      auto whole = begin_attachment(s, v);
      if (!whole) return whole.status().context("stream " + std::to_string(s.index));
      if (!*whole) {
        s.attaching = v;
        break;
      }
    }
    MINIHV_TRY(hand(v));
    if (round_end) round_handled(s, *round_end);
  }
  return Status::ok();
}

Status Session::Impl::deliver_all(const FrameHandler& handler, bool& stop, bool& any) {
  for (bool progress = true; progress && !stop;) {
    progress = false;
    // Streams 1..N-1 first, so their round ends are counted before stream 0's is considered.
    for (size_t k = 1; k <= streams_.size() && !stop; ++k) {
      StreamState& s = *streams_[k % streams_.size()];
      bool handed = false;
      const bool was_held = s.held.has_value(), was_attaching = s.attaching.has_value();
      MINIHV_TRY(deliver_lane(s, handler, stop, handed, kDeliverBurst));
      // A frame newly held for the barrier or waiting for its pages is progress too: the other
      // streams may complete it in this pass.
      if (handed || s.held.has_value() != was_held || s.attaching.has_value() != was_attaching) progress = true;
      any = any || handed;
    }
  }
  return Status::ok();
}

Status Session::Impl::end_of_stream(const StreamState& s) const {
  // The conversation is over (COMMIT, or this stream's last round): no page may still be arriving.
  if (!s.attaching) return Status::ok();
  return Status::error("protocol error: RAW_PAGES still arriving on stream " + std::to_string(s.index) +
                       " when the session ended");
}

Status Session::Impl::end_of_session() const {
  for (auto& s : streams_) MINIHV_TRY(end_of_stream(*s));
  return Status::ok();
}

Status Session::Impl::poll(const FrameHandler& handler) {
  MINIHV_TRY(pump_all(false, Clock::now()));
  bool stop = false, any = false;
  MINIHV_TRY(deliver_all(handler, stop, any));
  if (!any && !stop) MINIHV_TRY(closed_stream());
  return Status::ok();
}

Status Session::Impl::receive(const FrameHandler& handler, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::optional<Clock::time_point> closing;
  while (true) {
    bool stop = false, any = false;
    MINIHV_TRY(deliver_all(handler, stop, any));
    if (stop) return end_of_session();
    if (any) {
      deadline = Clock::now() + timeout;
      continue;  // re-arm receives before waiting
    }
    MINIHV_TRY(closed_stream_settled(closing));
    if (Clock::now() >= deadline)
      return Status::error("no frame from " + peer + " for " + ms_text(timeout) + " (peer dead or stuck)");
    MINIHV_TRY(pump_all(true, closing ? std::min(deadline, *closing) : deadline));
  }
}

Status Session::Impl::receive_stream(uint16_t stream, const FrameHandler& handler, std::chrono::milliseconds timeout) {
  if (stream >= streams_.size()) return Status::error("receive on stream " + std::to_string(stream));
  StreamState& s = *streams_[stream];
  auto deadline = Clock::now() + timeout;
  while (true) {
    bool stop = false, any = false;
    MINIHV_TRY(stopped());
    MINIHV_TRY(deliver_lane(s, handler, stop, any, SIZE_MAX));
    if (stop) return end_of_stream(s);  // only this stream: the others belong to other threads
    if (any) {
      deadline = Clock::now() + timeout;
      continue;
    }
    if (s.recv_closed) return s.closed_reason;
    const auto now = Clock::now();
    if (now >= deadline)
      return Status::error("no frame from " + peer + " on stream " + std::to_string(stream) + " for " +
                           ms_text(timeout) + " (peer dead or stuck)");
    const auto until = std::min(deadline, now + Session::kStopCheck);
    if (s.held) {  // wait for the other streams' round ends, not for this one's socket
      std::unique_lock lock(mu_);
      progress_cv_.wait_until(lock, until, [&] { return stopping_.load() || barrier_reached(s.held_round); });
      continue;
    }
    MINIHV_TRY(pump(s, true, until));
  }
}

Status Session::Impl::receive_remaining(const FrameHandler& handler, std::chrono::milliseconds timeout) {
  StreamState& s = *streams_[kControlStream];
  const auto deadline = Clock::now() + timeout;
  while (true) {
    bool stop = false, any = false;
    MINIHV_TRY(deliver_lane(s, handler, stop, any, SIZE_MAX));
    if (stop) return Status::ok();
    if (any) continue;
    if (s.recv_closed) return s.closed_reason;
    if (Clock::now() >= deadline) return Status::error("nothing more from " + peer + " within " + ms_text(timeout));
    // Not pump(): it answers with the lane's send failure; receiving may still work.
    arm_recv(s);
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts = timespec_until(deadline);
    if (s.inflight > 0) (void)io_uring_submit_and_wait_timeout(s.ring.raw(), &cqe, 1, &ts, nullptr);
    reap(s);
  }
}

TransportStats Session::Impl::stats() const {
  TransportStats all;
  for (const auto& s : streams_) {
    all.bytes_sent += s->stats.bytes_sent;
    all.bytes_received += s->stats.bytes_received;
    all.bytes_received_in_place += s->stats.bytes_received_in_place;
    all.frames_sent += s->stats.frames_sent;
    all.frames_received += s->stats.frames_received;
    all.busy_seconds = std::max(all.busy_seconds, s->stats.busy_seconds);
  }
  return all;
}

std::pair<uint64_t, double> Session::Impl::take_link_sample(uint16_t stream) {
  if (stream >= streams_.size()) return {0, 0};
  StreamState& s = *streams_[stream];
  double busy = s.stats.busy_seconds + (s.busy_since ? seconds(Clock::now() - *s.busy_since) : 0);
  std::pair<uint64_t, double> out{s.stats.bytes_sent - s.sampled_bytes, busy - s.sampled_seconds};
  s.sampled_bytes = s.stats.bytes_sent;
  s.sampled_seconds = busy;
  return out;
}

// ---- Session: thin forwarding, plus connect() ----

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;
uint16_t Session::streams() const { return static_cast<uint16_t>(impl_->opt.streams); }
uint64_t Session::session_id() const { return impl_->session_id; }
std::string Session::peer() const { return impl_->peer; }
std::string Session::tls() const { return impl_->tls_text(); }
double Session::handshake_ms() const { return impl_->handshake_ms; }
Status Session::send(uint16_t stream, Frame frame) { return impl_->send(stream, std::move(frame)); }
void Session::set_attachment_sink(AttachmentSink sink) { impl_->sink = std::move(sink); }
Status Session::send_round_end(RoundEnd m) { return impl_->send_round_end(m); }
void Session::count_pages(uint16_t stream, uint32_t pages) { impl_->count_pages(stream, pages); }
Status Session::flush() { return impl_->flush(); }
Status Session::poll(const FrameHandler& h) { return impl_->poll(h); }
Status Session::receive(const FrameHandler& h, std::chrono::milliseconds t) { return impl_->receive(h, t); }
Status Session::flush_stream(uint16_t stream) { return impl_->flush_stream(stream); }
Status Session::receive_stream(uint16_t stream, const FrameHandler& h, std::chrono::milliseconds t) {
  return impl_->receive_stream(stream, h, t);
}
void Session::stop(Status why) { impl_->stop(std::move(why)); }
Status Session::receive_remaining(const FrameHandler& h, std::chrono::milliseconds t) {
  return impl_->receive_remaining(h, t);
}
TransportStats Session::stats() const { return impl_->stats(); }
std::pair<uint64_t, double> Session::take_link_sample(uint16_t stream) { return impl_->take_link_sample(stream); }

namespace {

// The streams' connections to `ep`, each through its TLS handshake (all at once) unless plain.
Result<std::vector<StreamChannel>> open_channels(const Endpoint& ep, const TransportOptions& o, double& handshake_ms) {
  std::vector<UniqueFd> fds;
  for (uint16_t i = 0; i < o.streams; ++i) {
    auto fd = net::connect_to(ep, o.connect_timeout);
    if (!fd) return fd.status();
    fds.push_back(std::move(fd).value());
  }
  if (o.psk) {
    MINIHV_TRY(tls::prepare(tls::Role::kClient));  // once per process, not part of a handshake
    return secure_all(std::move(fds), *o.psk, Clock::now() + o.connect_timeout, &handshake_ms);
  }
  std::vector<StreamChannel> plain;
  for (auto& fd : fds) plain.push_back(StreamChannel::plain(std::move(fd)));
  return plain;
}

}  // namespace

Result<std::unique_ptr<Session>> Session::connect(std::span<const Endpoint> targets, const TransportOptions& o,
                                                  std::vector<ConnectAttempt>* tried) {
  if (o.streams == 0 || o.streams > kMaxStreams)
    return Status::invalid("--streams must be 1.." + std::to_string(kMaxStreams));
  if (targets.empty()) return Status::invalid("no migration target given");
  uint64_t id = o.session_id;
  while (id == 0)
    if (getrandom(&id, sizeof id, 0) != sizeof id) return Status::from_errno("getrandom");
  std::string failures;
  for (const Endpoint& ep : targets) {
    double handshake_ms = 0;
    auto channels = open_channels(ep, o, handshake_ms);
    if (tried) tried->push_back({ep.text(), channels.status()});
    if (!channels) {
      failures += (failures.empty() ? "" : "; ") + ep.text() + ": " + channels.message();
      continue;
    }
    TransportOptions opt = o;
    opt.session_id = id;
    std::vector<FrameParser> parsers;
    for (uint16_t i = 0; i < o.streams; ++i) parsers.emplace_back(i);
    auto impl = std::make_unique<Impl>(std::move(channels).value(), std::move(parsers), opt, id, ep.text());
    impl->handshake_ms = handshake_ms;
    MINIHV_TRY(impl->init());
    for (uint16_t i = 0; i < o.streams; ++i) MINIHV_TRY(impl->send(i, make_stream_open({id, i, o.streams})));
    MINIHV_TRY(impl->flush());
    return std::unique_ptr<Session>(new Session(std::move(impl)));
  }
  return Status::error("no migration target accepted the connection (" + failures + ")");
}

}  // namespace minihv::migrate
