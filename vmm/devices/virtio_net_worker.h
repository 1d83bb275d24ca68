// vmm/devices/virtio_net_worker.h — the I/O thread of one queue pair of an activated virtio-net
// device.
//
// Owns: one thread for the life of an activation (DRIVER_OK until reset). It polls its tap queue,
// its pair's notify eventfds (and the control queue's, on pair 0) and a control eventfd; moves
// frames tap -> RX queue (through one frame buffer, spread over several buffers when MRG_RXBUF is
// negotiated) and TX queue -> tap (writev straight from guest memory behind a header we checked),
// answers the control queue, and raises the interrupt. While paused, or while its pair is not
// among the driver's active pairs, it touches neither its queues nor the tap.
// Must not know: the transport's registers, migration, KVM, the other pairs' workers.
//
// Why a thread per pair, not one for all: multi-queue is there so that the guest's CPUs move
// frames in parallel; one host thread for all pairs would serialise them again. The pairs share
// nothing but the counters (atomics) and the interrupt (lock-free signals); the control queue
// lives on pair 0, whose thread asks the device to start or park the others (on_pairs_set).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "vmm/devices/net_spec.h"
#include "vmm/devices/virtio_device.h"
#include "vmm/devices/worker_control.h"

namespace minihv {

// Counters for the VM's `stats` command; shared by the device and its workers.
struct NetStats {
  std::atomic<uint64_t> rx_frames{0}, rx_bytes{0}, tx_frames{0}, tx_bytes{0};
  std::atomic<uint64_t> rx_dropped{0};  // frames from the tap the guest had no room for
  std::atomic<uint64_t> tx_dropped{0};  // frames of the guest the tap refused (or no tap)
  std::atomic<uint64_t> errors{0};      // broken chains and malformed requests of the driver
};

// What the worker needs of its device, set once at start.
struct NetWorkerContext {
  static constexpr unsigned kNoQueue = ~0u;
  VirtioActivation act;
  unsigned pair = 0;               // queues rx_queue(pair), tx_queue(pair); tap queue `pair`
  unsigned ctrl_queue = kNoQueue;  // pair 0 only
  int tap_fd = -1;
  NetStats* stats = nullptr;
  // How many pairs the driver uses (VQ_PAIRS_SET): a pair at or beyond it is parked. Read at each
  // control request (refresh()); pair 0 always runs.
  const std::atomic<unsigned>* active_pairs = nullptr;
  // Control-queue VQ_PAIRS_SET (on pair 0's thread): true if the device now uses that many pairs.
  std::function<bool(unsigned pairs)> on_pairs_set;
  // Control-queue ANNOUNCE_ACK from the driver (clears VIRTIO_NET_S_ANNOUNCE).
  std::function<void()> on_announce_ack;
  // The tap failed for good (deleted under us): the device logs it (once) and reports link down.
  std::function<void(const std::string& why)> on_tap_gone;
};

class NetWorker {
public:
  static constexpr uint32_t kMaxFrame = 65536 + 14 + 4;  // a TSO frame with Ethernet and VLAN header
  static constexpr unsigned kBatch = 64;  // frames per direction per pass, so neither starves
  static constexpr unsigned kMaxQueues = 2 * NicSpec::kMaxQueuePairs + 1;  // the pairs and control

  static Result<std::unique_ptr<NetWorker>> start(NetWorkerContext ctx, bool paused);
  ~NetWorker();  // stops and joins the thread
  NetWorker(const NetWorker&) = delete;
  NetWorker& operator=(const NetWorker&) = delete;

  // Stops touching the queues and the tap; returns when the thread has seen it.
  void pause();
  // Starts again; returns when the thread has made one full pass over the queues and the tap, so
  // what was made available before the call has been looked at (tests and the fuzzer rely on it).
  void unpause();
  // Frames (virtio header included, as the tap gives them) delivered to the guest before anything
  // read from the tap, in order: those a migration brought along. Call while paused.
  void inject(std::vector<std::vector<uint8_t>> frames);
  // The active pair count changed: returns when the thread has seen it (a pair parked no longer
  // touches its queues, a pair started has made one pass). Paused stays paused.
  void refresh();

private:
  explicit NetWorker(NetWorkerContext ctx, bool paused);
  void run(std::stop_token stop);
  void apply_control(const std::stop_token& stop);
  void ack_control();
  void wait_for_work(const std::stop_token& stop);
  // Pops the next usable chain of queue q; broken chains are answered (length 0) and skipped.
  bool pop(unsigned q, DescriptorChain& out);
  // pop() for the receive queue: a chain with a device-readable buffer is skipped as broken too.
  bool pop_rx(DescriptorChain& out);
  void bad_chain(unsigned q, uint16_t head, const char* why);
  void queue_broken(unsigned q);
  void process_tx();
  void send_chain();
  void process_rx();
  bool read_frame();
  bool take_injected();
  bool has_injected();
  enum class Delivery { kDone, kNoBuffers, kDropped };
  Delivery deliver_frame();
  Delivery deliver_merged();
  // Gives the first n chains of held_ back to the driver with nothing written, and forgets them.
  void return_held(size_t n);
  void count_rx();
  void process_ctrl();
  uint8_t control_answer(const uint8_t* cmd, uint32_t len);
  uint8_t set_pairs(const uint8_t* data, uint32_t len);
  void tap_failed(const char* op, int err);
  void notify_driver();
  bool has_ctrl() const { return ctrlq_ != NetWorkerContext::kNoQueue; }
  bool pair_active() const { return ctx_.pair == 0 || ctx_.pair < ctx_.active_pairs->load(); }

  // Set at construction, read-only afterwards.
  NetWorkerContext ctx_;
  bool mrg_rxbuf_ = false;
  unsigned rxq_ = 0, txq_ = 0, ctrlq_ = NetWorkerContext::kNoQueue;  // this pair's queues

  // The device's requests (pause, resume) and the thread's acknowledgements.
  WorkerControl control_;

  // The thread's own state.
  bool running_ = false, stopping_ = false, broken_ = false, tap_ok_ = true;
  bool warned_ = false, warned_tap_ = false;
  uint64_t bad_chains_ = 0;  // answered by bad_chain(): deliver_merged() must not rewind over one
  uint64_t pending_ack_ = 0, acked_ = 0;  // the request seen, the one acknowledged
  bool used_added_[kMaxQueues] = {};
  bool more_tx_ = false;     // the last TX pass stopped at kBatch: look again without waiting
  bool rx_waiting_ = false;  // a frame waits in frame_ for RX buffers: wait for the driver's kick
  uint32_t frame_len_ = 0;   // bytes in frame_ (virtio header included), 0 = none
  std::vector<uint8_t> frame_;
  DescriptorChain chain_;
  std::vector<DescriptorChain> held_;  // RX chains popped for one merged frame
  std::vector<UsedElem> used_;
  std::vector<iovec> iov_;

  std::mutex injected_mu_;  // inject() (device thread, while paused) and the thread
  std::deque<std::vector<uint8_t>> injected_;

  std::jthread thread_;  // declared last: stops first
};

}  // namespace minihv
