#include "vmm/devices/virtio_net_worker.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/sandbox.h"
#include "vmm/devices/virtio_spec.h"

namespace minihv {

using namespace virtio;
using namespace virtio::net;

namespace {

// Errors after which a tap fd is useless: the interface was deleted (the fd is detached).
bool tap_is_gone(int err) { return err == EBADFD || err == ENODEV || err == ENXIO; }

// Copies `src` into the writable buffers of `chain` from its start; marks what it wrote dirty.
uint32_t copy_to_chain(GuestMemory& mem, const DescriptorChain& chain, const uint8_t* src, uint32_t len) {
  uint32_t done = 0;
  for (const VirtqBuffer& b : chain.buffers) {
    if (!b.writable || done == len) continue;
    const uint32_t n = std::min(b.len, len - done);
    std::memcpy(b.host, src + done, n);
    mem.mark_dirty(b.gpa, n);
    done += n;
  }
  return done;
}

// Copies the first `len` readable bytes of `chain` into `dst`; returns how many there were.
uint32_t copy_from_chain(const DescriptorChain& chain, uint8_t* dst, uint32_t len) {
  uint32_t done = 0;
  for (const VirtqBuffer& b : chain.buffers) {
    if (b.writable || done == len) continue;
    const uint32_t n = std::min(b.len, len - done);
    std::memcpy(dst + done, b.host, n);
    done += n;
  }
  return done;
}

uint8_t* first_writable_byte(const DescriptorChain& chain) {
  for (const VirtqBuffer& b : chain.buffers)
    if (b.writable && b.len > 0) return b.host;
  return nullptr;
}

void drain_eventfd(int fd) {
  uint64_t v;
  while (::read(fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

}  // namespace

Result<std::unique_ptr<NetWorker>> NetWorker::start(NetWorkerContext ctx, bool paused) {
  const auto& act = ctx.act;
  const unsigned rx = rx_queue(ctx.pair), tx = tx_queue(ctx.pair);
  if (act.queues.size() <= tx || !act.queues[rx].active() || !act.queues[tx].active() ||
      act.notify_fds.size() < act.queues.size() || act.queues.size() > kMaxQueues || !ctx.active_pairs)
    return Status::error("virtio-net: receive and transmit queues of pair " + std::to_string(ctx.pair) +
                         " not set up by the driver");
  std::unique_ptr<NetWorker> w(new NetWorker(std::move(ctx), paused));
  MINIHV_TRY(w->control_.init("virtio-net"));
  w->thread_ = std::jthread([p = w.get()](std::stop_token st) { p->run(std::move(st)); });
  return w;
}

NetWorker::NetWorker(NetWorkerContext ctx, bool paused)
    : ctx_(std::move(ctx)), mrg_rxbuf_(ctx_.act.features & kFMrgRxbuf), rxq_(rx_queue(ctx_.pair)),
      txq_(tx_queue(ctx_.pair)), control_(paused), frame_(kHdrSize + kMaxFrame) {
  // A control queue the driver did not set up is not ours to poll.
  const unsigned c = ctx_.ctrl_queue;
  if (c < ctx_.act.queues.size() && ctx_.act.queues[c].active()) ctrlq_ = c;
}

NetWorker::~NetWorker() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  if (!control_.wake()) LOG_ERROR("virtio-net: cannot wake the I/O thread to stop it");
  thread_.join();
}

void NetWorker::pause() { control_.request(true, true); }

void NetWorker::unpause() {
  if (!control_.request(false, true)) LOG_ERROR("virtio-net: cannot wake the I/O thread to resume it");
}

void NetWorker::inject(std::vector<std::vector<uint8_t>> frames) {
  std::lock_guard lock(injected_mu_);
  for (auto& f : frames) injected_.push_back(std::move(f));
}

void NetWorker::refresh() {
  if (!control_.refresh()) LOG_ERROR("virtio-net: cannot wake the I/O thread of pair %u", ctx_.pair);
}

void NetWorker::apply_control(const std::stop_token& stop) {
  const WorkerControl::Request r = control_.take();
  stopping_ = stop.stop_requested();
  const bool was_running = running_;
  running_ = !r.paused && !stopping_ && !broken_ && pair_active();
  // A pair the driver starts (again) has had its kicks drained while parked: look at its RX ring.
  if (running_ && !was_running) rx_waiting_ = false;
  // Nothing is in flight between passes: what we saw is acknowledged once this pass ends.
  pending_ack_ = r.seq;
}

void NetWorker::ack_control() {
  if (pending_ack_ == acked_) return;
  control_.ack(pending_ack_);
  acked_ = pending_ack_;
}

void NetWorker::run(std::stop_token stop) {
  if (Status st = sandbox::enter(sandbox::ThreadClass::kDevice); !st.is_ok()) {
    LOG_ERROR("virtio-net: the I/O thread does not start: %s", st.message().c_str());
    return;
  }
  apply_control(stop);
  for (;;) {
    if (running_) {
      process_ctrl();
      process_tx();
      process_rx();
    }
    notify_driver();
    ack_control();
    if (stopping_) return;
    wait_for_work(stop);
  }
}

void NetWorker::wait_for_work(const std::stop_token& stop) {
  const unsigned queues[] = {rxq_, txq_, ctrlq_};
  const size_t nq = has_ctrl() ? 3 : 2;
  pollfd fds[5];
  nfds_t n = 0;
  fds[n++] = {control_.fd(), POLLIN, 0};
  for (size_t i = 0; i < nq; ++i) fds[n++] = {ctx_.act.notify_fds[queues[i]], POLLIN, 0};
  const bool want_tap = running_ && tap_ok_ && !rx_waiting_;
  if (want_tap) fds[n++] = {ctx_.tap_fd, POLLIN, 0};
  const int timeout = running_ && (more_tx_ || (!rx_waiting_ && has_injected())) ? 0 : -1;
  if (::poll(fds, n, timeout) < 0) return;  // EINTR: the next pass looks again
  for (size_t i = 0; i < nq; ++i)
    if (fds[1 + i].revents & POLLIN) {
      drain_eventfd(ctx_.act.notify_fds[queues[i]]);
      if (queues[i] == rxq_) rx_waiting_ = false;
    }
  if (fds[0].revents & POLLIN) {
    drain_eventfd(control_.fd());
    apply_control(stop);
  }
}

void NetWorker::notify_driver() {
  bool notify = false;
  for (unsigned q : {rxq_, txq_, ctrlq_})
    if (q != NetWorkerContext::kNoQueue && used_added_[q]) {
      used_added_[q] = false;
      if (ctx_.act.queues[q].should_notify()) notify = true;
    }
  if (notify) ctx_.act.signals->signal_used();
}

void NetWorker::queue_broken(unsigned q) {
  LOG_WARN("virtio-net: queue %u: %s; device needs reset", q,
           queue_error_name(ctx_.act.queues[q].broken_reason()));
  ++ctx_.stats->errors;
  broken_ = true;
  running_ = false;
  ctx_.act.signals->set_needs_reset();
}

void NetWorker::bad_chain(unsigned q, uint16_t head, const char* why) {
  ++ctx_.stats->errors;
  ++bad_chains_;
  if (!warned_) {
    warned_ = true;  // a hostile guest must not be able to flood the log
    LOG_WARN("virtio-net: queue %u: bad descriptor chain: %s", q, why);
  }
  ctx_.act.queues[q].add_used(head, 0);
  used_added_[q] = true;
}

bool NetWorker::pop(unsigned q, DescriptorChain& out) {
  for (;;) {
    switch (ctx_.act.queues[q].pop(out)) {
      case Virtqueue::Pop::kEmpty: return false;
      case Virtqueue::Pop::kChain: return true;
      case Virtqueue::Pop::kBadChain: bad_chain(q, out.head, queue_error_name(out.error)); continue;
      case Virtqueue::Pop::kBroken: queue_broken(q); return false;
    }
  }
}

void NetWorker::tap_failed(const char* op, int err) {
  if (!tap_is_gone(err)) {
    if (!warned_tap_) LOG_WARN("virtio-net: tap %s: %s; frame dropped", op, std::strerror(err));
    warned_tap_ = true;
    return;
  }
  if (!tap_ok_) return;
  tap_ok_ = false;
  // The device says so, once, with the tap's name (on_tap_gone).
  if (ctx_.on_tap_gone) ctx_.on_tap_gone(std::string("tap ") + op + ": " + std::strerror(err));
}

// ---- guest -> tap ----

void NetWorker::process_tx() {
  more_tx_ = false;
  for (unsigned i = 0; i < kBatch && running_; ++i) {
    if (!pop(txq_, chain_)) return;
    send_chain();
    ctx_.act.queues[txq_].add_used(chain_.head, 0);
    used_added_[txq_] = true;
  }
  more_tx_ = running_;
}

void NetWorker::send_chain() {
  const uint64_t bytes = chain_.readable_bytes();
  if (bytes < kHdrSize || bytes > kHdrSize + kMaxFrame) {
    ++ctx_.stats->tx_dropped;
    ++ctx_.stats->errors;
    return;
  }
  uint8_t hdr[kHdrSize];
  copy_from_chain(chain_, hdr, kHdrSize);
  const uint64_t f = ctx_.act.features;
  if (!(f & kFCsum)) hdr[kHdrFlags] = 0;  // offloads the driver did not negotiate are not its to ask
  if (hdr[kHdrGsoType] != kGsoNone && !(f & (kFHostTso4 | kFHostTso6))) {
    ++ctx_.stats->tx_dropped;
    ++ctx_.stats->errors;
    return;
  }
  hdr[kHdrNumBuffers] = hdr[kHdrNumBuffers + 1] = 0;
  iov_.clear();
  iov_.push_back({hdr, kHdrSize});
  uint32_t skip = kHdrSize;
  for (const VirtqBuffer& b : chain_.buffers) {
    if (b.writable) continue;
    const uint32_t s = std::min(skip, b.len);
    skip -= s;
    if (b.len > s) iov_.push_back({b.host + s, b.len - s});
  }
  if (!tap_ok_) {
    ++ctx_.stats->tx_dropped;
    return;
  }
  ssize_t n;
  do n = ::writev(ctx_.tap_fd, iov_.data(), static_cast<int>(iov_.size()));
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ++ctx_.stats->tx_dropped;
    return tap_failed("write", errno);
  }
  ++ctx_.stats->tx_frames;
  ctx_.stats->tx_bytes += bytes - kHdrSize;
}

// ---- tap -> guest ----

// While the RX ring has buffers the driver need not kick after refilling it (an exit per frame
// saved on a guest without EVENT_IDX, as QEMU does); kicks are asked for only when a frame waits.
void NetWorker::process_rx() {
  Virtqueue& q = ctx_.act.queues[rxq_];
  q.set_kicks(false);
  for (unsigned i = 0; i < kBatch && running_; ++i) {
    if (frame_len_ == 0 && !read_frame()) return;
    const uint16_t room_before = q.pending();
    if (deliver_frame() != Delivery::kNoBuffers) {
      frame_len_ = 0;
      continue;
    }
    q.set_kicks(true);
    if (q.pending() <= room_before) {
      rx_waiting_ = true;  // the driver's next kick (new buffers) clears it
      return;
    }
    q.set_kicks(false);  // buffers came while we asked: try this frame again
  }
}

bool NetWorker::pop_rx(DescriptorChain& out) {
  while (pop(rxq_, out)) {
    if (out.readable_bytes() == 0) return true;
    bad_chain(rxq_, out.head, "device-readable buffer in a receive chain");
  }
  return false;
}

bool NetWorker::has_injected() {
  std::lock_guard lock(injected_mu_);
  return !injected_.empty();
}

// The next injected frame into frame_; false when none is left. Sizes were checked by whoever
// made them (the device's saved state); a frame that does not fit is dropped all the same.
bool NetWorker::take_injected() {
  std::lock_guard lock(injected_mu_);
  while (!injected_.empty()) {
    std::vector<uint8_t> f = std::move(injected_.front());
    injected_.pop_front();
    if (f.size() < kHdrSize || f.size() > frame_.size()) {
      ++ctx_.stats->rx_dropped;
      continue;
    }
    std::copy(f.begin(), f.end(), frame_.begin());
    frame_len_ = static_cast<uint32_t>(f.size());
    return true;
  }
  return false;
}

bool NetWorker::read_frame() {
  if (take_injected()) return true;
  while (tap_ok_) {
    const ssize_t n = ::read(ctx_.tap_fd, frame_.data(), frame_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) tap_failed("read", errno);
      return false;
    }
    if (n < static_cast<ssize_t>(kHdrSize)) {  // not a frame: the tap's header alone is 12 bytes
      ++ctx_.stats->rx_dropped;
      continue;
    }
    frame_len_ = static_cast<uint32_t>(n);
    return true;
  }
  return false;
}

NetWorker::Delivery NetWorker::deliver_frame() {
  if (mrg_rxbuf_) return deliver_merged();
  Virtqueue& q = ctx_.act.queues[rxq_];
  if (!pop_rx(chain_)) return Delivery::kNoBuffers;
  if (chain_.writable_bytes() < frame_len_) {
    q.rewind(1);  // keep the buffer for a frame that fits; this one cannot be delivered
    ++ctx_.stats->rx_dropped;
    return Delivery::kDropped;
  }
  frame_[kHdrNumBuffers] = 1;
  frame_[kHdrNumBuffers + 1] = 0;
  copy_to_chain(*ctx_.act.mem, chain_, frame_.data(), frame_len_);
  q.add_used(chain_.head, frame_len_);
  used_added_[rxq_] = true;
  count_rx();
  return Delivery::kDone;
}

NetWorker::Delivery NetWorker::deliver_merged() {
  Virtqueue& q = ctx_.act.queues[rxq_];
  held_.clear();
  uint64_t room = 0;
  while (room < frame_len_) {
    if (held_.size() == q.size()) {  // the whole ring cannot hold it: tiny buffers, drop the frame
      q.rewind(static_cast<uint16_t>(held_.size()));
      ++ctx_.stats->rx_dropped;
      return Delivery::kDropped;
    }
    held_.emplace_back();
    const uint64_t bad_before = bad_chains_;
    const bool got = pop_rx(held_.back());
    if (bad_chains_ != bad_before && held_.size() > 1) {
      // The chains we hold came before one the driver broke, which is in the used ring now:
      // rewind() would count back over it (handing it back twice and losing ours), so ours go
      // back to the driver empty and the frame waits for the chains after the broken one.
      return_held(held_.size() - 1);
      room = 0;
    }
    if (!got) {
      q.rewind(static_cast<uint16_t>(held_.size() - 1));
      return Delivery::kNoBuffers;
    }
    room += held_.back().writable_bytes();
  }
  frame_[kHdrNumBuffers] = static_cast<uint8_t>(held_.size());
  frame_[kHdrNumBuffers + 1] = static_cast<uint8_t>(held_.size() >> 8);
  used_.clear();
  uint32_t done = 0;
  for (const DescriptorChain& c : held_) {
    const uint32_t n = copy_to_chain(*ctx_.act.mem, c, frame_.data() + done, frame_len_ - done);
    used_.push_back({c.head, n});
    done += n;
  }
  q.add_used(used_);
  used_added_[rxq_] = true;
  count_rx();
  return Delivery::kDone;
}

void NetWorker::return_held(size_t n) {
  used_.clear();
  for (size_t i = 0; i < n; ++i) used_.push_back({held_[i].head, 0});
  ctx_.act.queues[rxq_].add_used(used_);
  used_added_[rxq_] = true;
  held_.erase(held_.begin(), held_.begin() + static_cast<ptrdiff_t>(n));
}

void NetWorker::count_rx() {
  ++ctx_.stats->rx_frames;
  ctx_.stats->rx_bytes += frame_len_ - kHdrSize;
}

// ---- control queue ----

void NetWorker::process_ctrl() {
  if (!has_ctrl()) return;
  for (unsigned i = 0; i < kBatch && running_; ++i) {
    if (!pop(ctrlq_, chain_)) return;
    uint8_t cmd[kCtrlHeaderSize + kCtrlMqDataSize] = {};
    uint8_t* ack = first_writable_byte(chain_);
    const uint32_t len = copy_from_chain(chain_, cmd, sizeof cmd);
    uint32_t used = 0;
    if (len >= kCtrlHeaderSize && ack) {
      *ack = control_answer(cmd, len);
      used = 1;
      for (const VirtqBuffer& b : chain_.buffers)
        if (b.host == ack) ctx_.act.mem->mark_dirty(b.gpa, 1);
    } else {
      ++ctx_.stats->errors;
    }
    ctx_.act.queues[ctrlq_].add_used(chain_.head, used);
    used_added_[ctrlq_] = true;
  }
}

// `cmd`: class, command and the first bytes of the command's data (`len` in all).
uint8_t NetWorker::control_answer(const uint8_t* cmd, uint32_t len) {
  const uint64_t f = ctx_.act.features;
  if (cmd[0] == kCtrlClassAnnounce && cmd[1] == kCtrlAnnounceAck && (f & kFGuestAnnounce)) {
    if (ctx_.on_announce_ack) ctx_.on_announce_ack();
    return kCtrlOk;
  }
  if (cmd[0] == kCtrlClassMq && cmd[1] == kCtrlMqVqPairsSet && (f & kFMq))
    return set_pairs(cmd + kCtrlHeaderSize, len - kCtrlHeaderSize);
  return kCtrlErr;
}

// VQ_PAIRS_SET: the device checks the count (1 to what the driver set up) and parks or starts the
// other pairs before we answer, so no frame lands on a receive queue the driver gave up once it
// has seen the answer (5.1.6.5.5).
uint8_t NetWorker::set_pairs(const uint8_t* data, uint32_t len) {
  if (len < kCtrlMqDataSize) {
    ++ctx_.stats->errors;  // a command cut short is the driver's error, not a request for 0 pairs
    return kCtrlErr;
  }
  const unsigned pairs = static_cast<unsigned>(data[0] | data[1] << 8);
  return ctx_.on_pairs_set && ctx_.on_pairs_set(pairs) ? kCtrlOk : kCtrlErr;
}

}  // namespace minihv
