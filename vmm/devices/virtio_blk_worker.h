// vmm/devices/virtio_blk_worker.h — the I/O thread of one activated virtio-blk device.
//
// Owns: one thread and one io_uring for the life of an activation (DRIVER_OK until reset). The
// thread waits on the queue's notify eventfd and a control eventfd through io_uring reads, pops
// requests, submits reads/writes/fsyncs straight into guest memory with up to kMaxInFlight in
// flight, completes them in the used ring and raises the interrupt. Under on-error=stop a read or
// write the kernel fails with a stops_on_error() errno is parked unanswered: the thread takes no new
// request and tells the policy's on_stop until the next unpause(), which resubmits what was parked.
// Must not know: the transport's registers (it talks through VirtioActivation/VirtioSignals).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "common/uring.h"
#include "vmm/devices/disk_spec.h"
#include "vmm/devices/virtio_blk_backend.h"
#include "vmm/devices/virtio_blk_request.h"
#include "vmm/devices/virtio_device.h"
#include "vmm/devices/worker_control.h"

namespace minihv {

// Counters for the VM's `stats` command; shared by the device and its workers.
struct BlkStats {
  std::atomic<uint64_t> reads{0}, writes{0}, flushes{0}, read_bytes{0}, write_bytes{0};
  std::atomic<uint64_t> errors{0};  // requests answered IOERR or UNSUPP, and broken chains
  std::atomic<uint64_t> bounce_bytes{0};  // aligned copies held now (see BlkWorker::kBounceBudget)
};

class BlkWorker {
public:
  static constexpr unsigned kMaxInFlight = 128;           // requests in flight at once
  static constexpr unsigned kRingEntries = 256;           // > kMaxInFlight + 2 eventfd reads
  static constexpr uint64_t kMaxBounceBytes = 16 << 20;   // largest unaligned O_DIRECT request
  // Aligned copies one disk may hold at once: two of the largest. A request that would pass it
  // waits for earlier ones to complete (their buffers are reused or freed first).
  static constexpr uint64_t kBounceBudget = 2 * kMaxBounceBytes;
  // Copies are kept for the next request, and all freed once the disk has been idle this long.
  static constexpr unsigned kBounceIdleMs = 1000;

  // Starts the thread; `paused` starts it without taking requests (see pause()).
  static Result<std::unique_ptr<BlkWorker>> start(const VirtioActivation& act,
                                                  const BlockBackend& backend,
                                                  const std::string& serial, BlkStats& stats,
                                                  bool paused, DiskErrorPolicy policy = {});
  // Stops taking requests, waits for every in-flight I/O, joins the thread.
  ~BlkWorker();
  BlkWorker(const BlkWorker&) = delete;
  BlkWorker& operator=(const BlkWorker&) = delete;

  // Stops taking new requests and returns when none is in flight.
  void pause();
  // Takes requests again, including those that arrived while paused, and resubmits parked ones.
  void unpause();
  // Requests parked on an I/O error (on-error=stop), unanswered until unpause() retries them.
  unsigned parked() const { return parked_count_.load(); }

private:
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  struct Slot {
    BlkRequest req;
    std::vector<iovec> iov;
    size_t iov_pos = 0;
    uint64_t done = 0;  // bytes transferred so far (short reads/writes are resubmitted)
    std::unique_ptr<uint8_t, FreeDeleter> bounce;
    uint64_t bounce_size = 0;
    bool use_bounce = false;
    int64_t deadline = 0;  // a write in the kernel on a watched disk: by when it must be done
  };

  BlkWorker(const VirtioActivation& act, const BlockBackend& backend, const std::string& serial,
            BlkStats& stats, bool paused, DiskErrorPolicy policy);
  void run(std::stop_token stop);
  void arm_eventfd_read(int fd, uint64_t tag, uint64_t* buf);
  io_uring_sqe* get_sqe();
  void apply_control(const std::stop_token& stop);
  void ack_if_drained();
  void process_queue();
  void handle_chain(bool chain_ok);
  enum class Prep { kReady, kFailed, kWaitForBounce };
  Prep prepare_io(Slot& s);
  Prep reserve_bounce(Slot& s);
  Prep fill_bounce(Slot& s);
  void start_bounce_waiters();
  void drop_bounce(Slot& s);
  void drop_idle_bounces();
  void arm_idle_timer();
  void on_idle_timer();
  void submit_io(unsigned idx);
  void submit_held_writes();
  void stamp_deadlines();
  void publish_deadlines();
  void prep_sqe(unsigned idx);
  void complete_io(unsigned idx, int32_t res);
  bool parks(const Slot& s, int32_t res) const;
  void park(unsigned idx, int32_t res);
  void retry_parked();
  void finish(const BlkRequest& req, uint8_t status, uint32_t used_len);
  void release(unsigned idx, uint8_t status, uint32_t used_len);
  void give_up(const char* why);
  void notify_driver();

  // Set at construction, read-only afterwards.
  VirtioActivation act_;
  const BlockBackend& backend_;
  std::string serial_;
  BlkStats& stats_;
  Virtqueue& queue_;
  DiskErrorPolicy policy_;

  // The device's requests (pause, resume) and the thread's acknowledgements.
  WorkerControl control_;

  // The thread's own state.
  bool running_ = false, stopping_ = false, broken_ = false, warned_ = false;
  bool used_added_ = false;
  uint64_t pending_ack_ = 0, acked_ = 0;  // the request seen, the one acknowledged
  unsigned in_flight_ = 0;
  std::vector<Slot> slots_;
  std::vector<unsigned> free_;
  std::vector<unsigned> held_writes_;  // writes ready for the kernel, gated as one just before it
  bool deadlines_changed_ = false;     // a watched write completed since the last publish
  std::deque<unsigned> bounce_waiters_;  // taken from the queue, waiting for the bounce budget
  uint64_t bounce_bytes_ = 0;          // held by all slots (mirrored in stats_.bounce_bytes)
  bool idle_timer_armed_ = false;
  std::chrono::steady_clock::time_point last_bounce_use_;
  DescriptorChain chain_;
  // Parked on an I/O error: neither in flight in the ring nor free. Held until a control request
  // newer than held_seq_ runs the thread again.
  std::vector<unsigned> parked_;
  std::atomic<unsigned> parked_count_{0};
  bool held_ = false;
  uint64_t held_seq_ = 0;

  // Declared last: the thread stops first, then the ring (cancelling the eventfd reads into these
  // buffers), then the buffers.
  uint64_t notify_buf_ = 0, ctl_buf_ = 0;
  __kernel_timespec idle_ts_{};
  Uring ring_;
  std::jthread thread_;
};

}  // namespace minihv
