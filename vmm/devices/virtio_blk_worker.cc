#include "vmm/devices/virtio_blk_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "common/log.h"
#include "common/sandbox.h"

namespace minihv {

using namespace virtio::blk;

namespace {

// user_data of the two eventfd reads and the idle timeout; request slots use their index
// (< kMaxInFlight).
constexpr uint64_t kTagNotify = uint64_t{1} << 62;
constexpr uint64_t kTagControl = kTagNotify + 1;
constexpr uint64_t kTagIdle = kTagNotify + 2;
// Consecutive io_uring failures after which the thread gives up (never seen in practice).
constexpr unsigned kMaxRingFailures = 100;

bool is_aligned(const std::vector<VirtqBuffer>& data, uint32_t align) {
  for (const VirtqBuffer& b : data)
    if (reinterpret_cast<uintptr_t>(b.host) % align || b.len % align) return false;
  return true;
}

}  // namespace

Result<std::unique_ptr<BlkWorker>> BlkWorker::start(const VirtioActivation& act,
                                                    const BlockBackend& backend,
                                                    const std::string& serial, BlkStats& stats,
                                                    bool paused, DiskErrorPolicy policy) {
  if (act.queues.empty() || !act.queues[0].active() || act.notify_fds.empty())
    return Status::error("virtio-blk: request queue not set up by the driver");
  std::unique_ptr<BlkWorker> w(new BlkWorker(act, backend, serial, stats, paused, std::move(policy)));
  MINIHV_TRY(w->control_.init("virtio-blk"));
  MINIHV_TRY(w->ring_.init(kRingEntries).context("virtio-blk"));
  w->thread_ = std::jthread([p = w.get()](std::stop_token st) { p->run(std::move(st)); });
  return w;
}

BlkWorker::BlkWorker(const VirtioActivation& act, const BlockBackend& backend,
                     const std::string& serial, BlkStats& stats, bool paused, DiskErrorPolicy policy)
    : act_(act), backend_(backend), serial_(serial), stats_(stats), queue_(act.queues[0]),
      policy_(std::move(policy)), control_(paused), slots_(kMaxInFlight) {
  for (unsigned i = kMaxInFlight; i-- > 0;) free_.push_back(i);
}

BlkWorker::~BlkWorker() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  if (!control_.wake()) LOG_ERROR("virtio-blk: cannot wake the I/O thread to stop it");
  thread_.join();
}

void BlkWorker::pause() { control_.request(true, true); }

void BlkWorker::unpause() {
  if (!control_.request(false, false)) LOG_ERROR("virtio-blk: cannot wake the I/O thread to resume it");
}

io_uring_sqe* BlkWorker::get_sqe() {
  io_uring_sqe* sqe = ring_.sqe();
  if (!sqe) {  // cannot happen with kRingEntries > in-flight + 2, but never hand out nullptr
    (void)ring_.submit();
    sqe = ring_.sqe();
  }
  return sqe;
}

void BlkWorker::arm_eventfd_read(int fd, uint64_t tag, uint64_t* buf) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return;
  io_uring_prep_read(sqe, fd, buf, sizeof *buf, 0);
  sqe->user_data = tag;
}

void BlkWorker::apply_control(const std::stop_token& stop) {
  const WorkerControl::Request r = control_.take();
  stopping_ = stop.stop_requested();
  if (held_ && !r.paused && !stopping_ && r.seq > held_seq_) retry_parked();
  running_ = !r.paused && !stopping_ && !broken_ && !held_;
  pending_ack_ = r.seq;
}

void BlkWorker::ack_if_drained() {
  if (in_flight_ || pending_ack_ == acked_) return;
  control_.ack(pending_ack_);
  acked_ = pending_ack_;
}

void BlkWorker::notify_driver() {
  if (!used_added_) return;
  used_added_ = false;
  if (queue_.should_notify()) act_.signals->signal_used();
}

void BlkWorker::run(std::stop_token stop) {
  if (Status st = sandbox::enter(sandbox::ThreadClass::kDevice); !st.is_ok()) {
    LOG_ERROR("virtio-blk: the I/O thread does not start: %s", st.message().c_str());
    return;
  }
  arm_eventfd_read(act_.notify_fds[0], kTagNotify, &notify_buf_);
  arm_eventfd_read(control_.fd(), kTagControl, &ctl_buf_);
  apply_control(stop);
  process_queue();  // requests made available before activation (e.g. a restored queue)
  unsigned failures = 0;
  for (;;) {
    submit_held_writes();
    arm_idle_timer();
    notify_driver();
    ack_if_drained();
    if (stopping_ && in_flight_ == 0) break;
    if (Status s = ring_.submit_and_wait(1); !s) {
      if (++failures == 1) LOG_ERROR("virtio-blk %s: %s", backend_.name().c_str(), s.message().c_str());
      if (failures >= kMaxRingFailures) return give_up("io_uring keeps failing");
      continue;
    }
    failures = 0;
    bool kicked = false, control = false, idle = false;
    unsigned completed = 0;
    ring_.reap([&](uint64_t tag, int32_t res) {
      if (tag == kTagNotify) kicked = true;
      else if (tag == kTagControl) control = true;
      else if (tag == kTagIdle) idle = true;
      else if (tag < kMaxInFlight) {
        complete_io(static_cast<unsigned>(tag), res);
        ++completed;
      }
    });
    if (deadlines_changed_) publish_deadlines();
    if (kicked) arm_eventfd_read(act_.notify_fds[0], kTagNotify, &notify_buf_);
    if (control) {
      arm_eventfd_read(control_.fd(), kTagControl, &ctl_buf_);
      apply_control(stop);
    }
    if (idle) on_idle_timer();
    if (completed) start_bounce_waiters();
    if (kicked || control || completed) process_queue();
  }
}

void BlkWorker::give_up(const char* why) {
  LOG_ERROR("virtio-blk %s: I/O thread stops: %s", backend_.name().c_str(), why);
  act_.signals->set_needs_reset();
  control_.abandon();  // nobody waits for a thread that is gone
}

void BlkWorker::process_queue() {
  while (running_ && !free_.empty() && bounce_waiters_.empty()) {
    switch (queue_.pop(chain_)) {
      case Virtqueue::Pop::kEmpty: return;
      case Virtqueue::Pop::kChain: handle_chain(true); break;
      case Virtqueue::Pop::kBadChain: handle_chain(false); break;
      case Virtqueue::Pop::kBroken:
        LOG_WARN("virtio-blk %s: %s; device needs reset", backend_.name().c_str(),
                 queue_error_name(queue_.broken_reason()));
        ++stats_.errors;
        broken_ = true;
        running_ = false;
        act_.signals->set_needs_reset();
        return;
    }
  }
}

void BlkWorker::handle_chain(bool chain_ok) {
  const unsigned idx = free_.back();
  Slot& s = slots_[idx];
  parse_blk_request(chain_, chain_ok, backend_, s.req);
  if (!chain_ok && !warned_) {
    warned_ = true;  // a hostile guest must not be able to flood the log
    LOG_WARN("virtio-blk %s: bad descriptor chain: %s", backend_.name().c_str(),
             queue_error_name(chain_.error));
  }
  if (!s.req.status_host) {  // no way to answer this request: the driver must reset us
    ++stats_.errors;
    broken_ = true;
    running_ = false;
    act_.signals->set_needs_reset();
    return;
  }
  switch (s.req.op) {
    case BlkRequest::Op::kDone:
      if (s.req.status != kSOk) ++stats_.errors;
      return finish(s.req, s.req.status, 1);
    case BlkRequest::Op::kGetId: {
      char id[kIdBytes] = {};
      std::memcpy(id, serial_.data(), std::min<size_t>(serial_.size(), kIdBytes));
      const uint64_t n = scatter_to_guest(*act_.mem, s.req.data,
                                          {reinterpret_cast<uint8_t*>(id), s.req.bytes});
      return finish(s.req, kSOk, static_cast<uint32_t>(n + 1));
    }
    default: break;
  }
  const Prep prep = prepare_io(s);
  if (prep == Prep::kFailed) {
    ++stats_.errors;
    return finish(s.req, kSIoErr, 1);
  }
  free_.pop_back();
  ++in_flight_;
  if (prep == Prep::kWaitForBounce) return bounce_waiters_.push_back(idx);
  submit_io(idx);
}

BlkWorker::Prep BlkWorker::prepare_io(Slot& s) {
  s.done = 0;
  s.iov_pos = 0;
  s.iov.clear();
  s.use_bounce = false;
  if (s.req.op == BlkRequest::Op::kFlush) return Prep::kReady;
  const uint32_t align = backend_.alignment();
  if (align > 1 && !is_aligned(s.req.data, align)) {
    // O_DIRECT cannot take these guest buffers: go through an aligned buffer of our own.
    if (s.req.bytes > kMaxBounceBytes) return Prep::kFailed;
    s.use_bounce = true;
    return reserve_bounce(s);
  }
  for (const VirtqBuffer& b : s.req.data) s.iov.push_back({b.host, b.len});
  return Prep::kReady;
}

// Gives the slot an aligned buffer of at least its request's size, within kBounceBudget for the
// disk: the idle slots' buffers go first; if that is not enough the request waits.
BlkWorker::Prep BlkWorker::reserve_bounce(Slot& s) {
  last_bounce_use_ = std::chrono::steady_clock::now();
  const uint32_t align = backend_.alignment();
  const uint64_t size = (s.req.bytes + align - 1) / align * align;
  if (s.bounce_size >= size) return fill_bounce(s);
  drop_bounce(s);
  if (bounce_bytes_ + size > kBounceBudget) drop_idle_bounces();
  if (bounce_bytes_ + size > kBounceBudget) return Prep::kWaitForBounce;
  s.bounce.reset(static_cast<uint8_t*>(std::aligned_alloc(align, size)));
  if (!s.bounce) return Prep::kFailed;
  s.bounce_size = size;
  bounce_bytes_ += size;
  stats_.bounce_bytes = bounce_bytes_;
  return fill_bounce(s);
}

// A write's data goes into its copy now: the guest's buffers are the device's until it answers.
BlkWorker::Prep BlkWorker::fill_bounce(Slot& s) {
  if (s.req.op == BlkRequest::Op::kWrite) gather_from_guest(s.req.data, {s.bounce.get(), s.req.bytes});
  return Prep::kReady;
}

// Requests that waited for the budget, in the order they came, as far as it now allows.
void BlkWorker::start_bounce_waiters() {
  while (!bounce_waiters_.empty()) {
    const unsigned idx = bounce_waiters_.front();
    const Prep p = reserve_bounce(slots_[idx]);
    if (p == Prep::kWaitForBounce) return;
    bounce_waiters_.pop_front();
    if (p == Prep::kFailed) {
      ++stats_.errors;
      release(idx, kSIoErr, 1);
      continue;
    }
    submit_io(idx);
  }
}

void BlkWorker::drop_bounce(Slot& s) {
  bounce_bytes_ -= s.bounce_size;
  stats_.bounce_bytes = bounce_bytes_;
  s.bounce.reset();
  s.bounce_size = 0;
}

void BlkWorker::drop_idle_bounces() {
  for (const unsigned idx : free_) drop_bounce(slots_[idx]);
}

// While copies are held and nothing is in flight, a timeout wakes the thread to free them.
void BlkWorker::arm_idle_timer() {
  if (idle_timer_armed_ || in_flight_ || bounce_bytes_ == 0) return;
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return;
  idle_ts_.tv_sec = kBounceIdleMs / 1000;
  idle_ts_.tv_nsec = (kBounceIdleMs % 1000) * 1'000'000LL;
  io_uring_prep_timeout(sqe, &idle_ts_, 0, 0);
  sqe->user_data = kTagIdle;
  idle_timer_armed_ = true;
}

void BlkWorker::on_idle_timer() {
  idle_timer_armed_ = false;
  const auto idle_for = std::chrono::steady_clock::now() - last_bounce_use_;
  if (in_flight_ == 0 && idle_for >= std::chrono::milliseconds(kBounceIdleMs)) drop_idle_bounces();
}

// Writes wait in held_writes_ until the loop is about to enter the kernel: the gate (the lease, or
// the node's fence) is asked then, once for all of them, not when each was taken from the queue —
// preparing a batch (up to kMaxInFlight requests with their bounce copies) takes time the guest
// controls, and a write must not reach the kernel on an answer older than that.
void BlkWorker::submit_io(unsigned idx) {
  if (slots_[idx].req.op == BlkRequest::Op::kWrite) return held_writes_.push_back(idx);
  prep_sqe(idx);
}

void BlkWorker::submit_held_writes() {
  while (!held_writes_.empty()) {
    if (backend_.may_write()) {
      stamp_deadlines();
      for (const unsigned idx : held_writes_) prep_sqe(idx);
      held_writes_.clear();
      return;
    }
    for (const unsigned idx : held_writes_) {
      ++stats_.errors;  // e.g. the volume disk's lease is no longer provably ours: nothing is written
      release(idx, kSIoErr, 1);
    }
    held_writes_.clear();
    process_queue();  // the freed slots take the requests still waiting
  }
}

// A watched disk (a cluster VM's): the writes about to reach the kernel carry the fence's deadline,
// published before they get there, so the node sees any that is still in the kernel past it.
void BlkWorker::stamp_deadlines() {
  const BlockBackend::DeadlineWatch& w = backend_.deadline_watch();
  if (!w.deadline) return;
  const int64_t d = w.deadline();
  for (const unsigned idx : held_writes_) slots_[idx].deadline = d;
  publish_deadlines();
  static std::atomic<bool> stalled{false};
  if (w.stall_once.count() > 0 && !stalled.exchange(true)) std::this_thread::sleep_for(w.stall_once);
}

void BlkWorker::publish_deadlines() {
  deadlines_changed_ = false;
  int64_t oldest = 0;
  for (const Slot& s : slots_)
    if (s.deadline != 0 && (oldest == 0 || s.deadline < oldest)) oldest = s.deadline;
  backend_.deadline_watch().publish(oldest);
}

void BlkWorker::prep_sqe(unsigned idx) {
  Slot& s = slots_[idx];
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return release(idx, kSIoErr, 1);
  const int fd = backend_.fd();
  const uint64_t off = s.req.offset + s.done;
  const unsigned left = static_cast<unsigned>(std::min<uint64_t>(s.req.bytes - s.done, UINT32_MAX));
  iovec* iov = s.iov.data() + s.iov_pos;
  const unsigned niov = static_cast<unsigned>(s.iov.size() - s.iov_pos);
  switch (s.req.op) {
    case BlkRequest::Op::kRead:
      if (s.use_bounce) io_uring_prep_read(sqe, fd, s.bounce.get() + s.done, left, off);
      else io_uring_prep_readv(sqe, fd, iov, niov, off);
      break;
    case BlkRequest::Op::kWrite:
      if (s.use_bounce) io_uring_prep_write(sqe, fd, s.bounce.get() + s.done, left, off);
      else io_uring_prep_writev(sqe, fd, iov, niov, off);
      break;
    default: io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC); break;
  }
  sqe->user_data = idx;
}

void BlkWorker::complete_io(unsigned idx, int32_t res) {
  Slot& s = slots_[idx];
  BlkRequest& r = s.req;
  if (s.deadline != 0) {
    s.deadline = 0;
    deadlines_changed_ = true;
  }
  if (res == -EINTR || res == -EAGAIN) return submit_io(idx);
  if (parks(s, res)) return park(idx, res);
  if (res < 0) {
    LOG_DEBUG("virtio-blk %s: I/O error: %s", backend_.name().c_str(), std::strerror(-res));
  } else if (r.op != BlkRequest::Op::kFlush) {
    s.done += static_cast<uint64_t>(res);
    if (res > 0 && s.done < r.bytes) {  // short transfer: continue where it stopped
      for (uint64_t n = static_cast<uint64_t>(res); n && !s.use_bounce;) {
        iovec& v = s.iov[s.iov_pos];
        const uint64_t step = std::min<uint64_t>(n, v.iov_len);
        v.iov_base = static_cast<uint8_t*>(v.iov_base) + step;
        v.iov_len -= step;
        n -= step;
        if (v.iov_len == 0) ++s.iov_pos;
      }
      return submit_io(idx);
    }
  }
  const bool ok = res >= 0 && (r.op == BlkRequest::Op::kFlush || s.done == r.bytes);
  switch (r.op) {
    case BlkRequest::Op::kRead:
      if (s.use_bounce && ok) scatter_to_guest(*act_.mem, r.data, {s.bounce.get(), r.bytes});
      else
        for (const VirtqBuffer& b : r.data) act_.mem->mark_dirty(b.gpa, b.len);
      ++stats_.reads;
      if (ok) stats_.read_bytes += r.bytes;
      break;
    case BlkRequest::Op::kWrite:
      ++stats_.writes;
      if (ok) stats_.write_bytes += r.bytes;
      break;
    default: ++stats_.flushes; break;
  }
  if (!ok) ++stats_.errors;
  const uint32_t used = ok && r.op == BlkRequest::Op::kRead ? static_cast<uint32_t>(r.bytes + 1) : 1;
  release(idx, ok ? kSOk : kSIoErr, used);
}

bool BlkWorker::parks(const Slot& s, int32_t res) const {
  const bool data = s.req.op == BlkRequest::Op::kRead || s.req.op == BlkRequest::Op::kWrite;
  return data && res < 0 && policy_.action == DiskErrorAction::kStop && stops_on_error(-res);
}

// The request stays unanswered (the guest still waits for it) with what it transferred so far; the
// first one parked stops the disk and asks for the VM to pause.
// A parked request holds no bounce copy: it is made again from the guest's buffers on the retry,
// which starts the request over (rewriting what it wrote is harmless), so requests that waited for
// the budget are not held up by a disk that waits for its VM to be resumed.
void BlkWorker::park(unsigned idx, int32_t res) {
  Slot& s = slots_[idx];
  if (s.use_bounce) {
    s.done = 0;
    drop_bounce(s);
  }
  parked_.push_back(idx);
  parked_count_.store(static_cast<unsigned>(parked_.size()));
  --in_flight_;
  start_bounce_waiters();
  if (held_) return;
  held_ = true;
  running_ = false;
  held_seq_ = pending_ack_;
  const std::string why = "disk error: " + backend_.name() + ": " + std::strerror(-res);
  LOG_WARN("virtio-blk %s: %s; the disk waits for the VM to be resumed (on-error=stop)",
           backend_.name().c_str(), std::strerror(-res));
  if (policy_.on_stop) policy_.on_stop(why);
}

// Resubmits every parked request from where it stopped; one that fails again parks again.
void BlkWorker::retry_parked() {
  held_ = false;
  std::vector<unsigned> again;
  again.swap(parked_);
  parked_count_.store(0);
  for (unsigned idx : again) {
    ++in_flight_;
    if (slots_[idx].use_bounce) bounce_waiters_.push_back(idx);  // its copy is made again first
    else submit_io(idx);
  }
  start_bounce_waiters();
}

void BlkWorker::release(unsigned idx, uint8_t status, uint32_t used_len) {
  finish(slots_[idx].req, status, used_len);
  --in_flight_;
  free_.push_back(idx);
}

void BlkWorker::finish(const BlkRequest& req, uint8_t status, uint32_t used_len) {
  write_blk_status(*act_.mem, req, status);
  queue_.add_used(req.head, used_len);
  used_added_ = true;
}

}  // namespace minihv
