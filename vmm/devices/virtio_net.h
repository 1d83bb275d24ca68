// vmm/devices/virtio_net.h — virtio-net (VIRTIO 1.2 §5.1) on a tap, one or more queue pairs and a
// control queue.
//
// Owns: the device's identity, features (mergeable RX buffers, checksum/TSO offloads where the tap
// takes them, MAC, link status, GUEST_ANNOUNCE, MQ with a multi-queue tap), its config space, its
// I/O workers (one thread per queue pair per activation, virtio_net_worker.h), which pairs the
// driver uses (VQ_PAIRS_SET; pair i is tap queue i), quiesce/resume, the saved state (MAC, status,
// active pairs) and the self-announce after a migration: RARP rounds on the tap and
// VIRTIO_NET_S_ANNOUNCE for a driver that negotiated it.
// Must not know: the transport registers, KVM, migration (the VM calls announce()).
//
// Threads: the transport calls the VirtioDevice methods (vCPU threads, serialised); the VM thread
// calls quiesce/resume/announce/stats; the workers and the announcer thread report through
// atomics and the transport's lock-free signals. Pair 0's worker sets the active pairs
// (set_pairs(), under pairs_mu_ only: quiesce() holds mu_ while it waits for that worker).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "vmm/devices/net_spec.h"
#include "vmm/devices/tap.h"
#include "vmm/devices/virtio_device.h"
#include "vmm/devices/virtio_net_worker.h"

namespace minihv {

class VirtioNet final : public VirtioDevice {
public:
  static constexpr uint16_t kQueueSize = 256;

  // `mac_fixed`: the MAC was given (--net mac=); a restore then refuses a different saved MAC. A
  // NIC with a generated MAC takes the saved one (the guest keeps its address across a move).
  // One queue pair per queue of the tap.
  static Result<std::unique_ptr<VirtioNet>> create(Tap tap, MacAddress mac, bool mac_fixed);
  ~VirtioNet() override;

  // --- VirtioDevice ---
  uint32_t device_id() const override;
  uint64_t features() const override;
  // Fixed by the tap: 2 per pair and the control queue, whatever the driver negotiates.
  unsigned num_queues() const override { return 2 * max_pairs_ + 1; }
  uint16_t queue_max_size() const override { return kQueueSize; }
  void read_config(uint64_t offset, uint8_t* data, uint32_t len) const override;
  void write_config(uint64_t offset, const uint8_t* data, uint32_t len) override;
  Status activate(const VirtioActivation& act) override;
  void reset() override;
  // Stops moving frames either way (the source of a migration sends nothing of the guest's after
  // its pause) until resume(); stays quiesced across reset/activate.
  Status quiesce() override;
  void resume() override;
  std::vector<uint8_t> save_state() const override;
  Status restore_state(std::span<const uint8_t> blob) override;

  // Tells the network that the guest is here now (after a migration's resume): RARP rounds from
  // the guest's MAC on the tap (QEMU's schedule, net_announce.h), and VIRTIO_NET_S_ANNOUNCE with a
  // configuration interrupt for a driver that negotiated GUEST_ANNOUNCE. Returns at once. No round
  // goes out while the device is quiesced (a migration's source, from its pause on); the rest of
  // the series follows resume().
  void announce();
  // One RARP frame from the guest's MAC now, nothing else: a migration's destination once the
  // source has paused the guest, so the network sends its frames here from then on (they wait in
  // the tap until the guest runs; announce() follows then).
  void send_rarp();
  // The guest's MAC from a migration's source, before any page moves; refused (naming both) when
  // this NIC's mac= was given and differs.
  Status adopt_mac(const MacAddress& mac);

  // On a migration's source, after the pause and as late as it can: reads the frames that reached
  // the tap since (the network sends them here until the destination announces the guest) and
  // keeps them, up to kMaxHeldFrames / kMaxHeldBytes (the rest stay in the tap). They go with
  // save_state() and are delivered first by whichever side runs the guest next: the destination,
  // or this one when the migration fails (resume()). A frame the network got from the guest is
  // then not lost to the move, and its TCP sender need not recover it.
  void hold_arrivals();
  static constexpr size_t kMaxHeldFrames = 256;
  static constexpr size_t kMaxHeldBytes = 4u << 20;

  struct Stats {
    uint64_t rx_frames = 0, rx_bytes = 0, tx_frames = 0, tx_bytes = 0;
    uint64_t rx_dropped = 0, tx_dropped = 0, errors = 0, announcements = 0;
    bool link_up = false;
    unsigned queue_pairs = 1;  // the pairs the driver uses (VQ_PAIRS_SET)
  };
  Stats stats() const;
  const std::string& tap_name() const { return tap_.name(); }
  MacAddress mac() const;
  // The queue pairs the driver uses now (1 until it sends VQ_PAIRS_SET).
  unsigned active_pairs() const { return active_pairs_.load(); }

private:
  VirtioNet(Tap tap, MacAddress mac, bool mac_fixed);
  uint16_t config_status() const;
  Status check_mac(const MacAddress& mac) const;  // under mu_
  void tap_gone(const std::string& why);
  bool set_pairs(unsigned pairs);
  void stop_workers();
  void run_announcer(std::stop_token stop);
  void hold_announcements(bool hold);
  void hand_held_to_worker();

  Tap tap_;
  const unsigned max_pairs_;  // the tap's queues; MQ is offered when more than one
  const bool mac_fixed_;
  NetStats stats_;
  std::atomic<uint64_t> announcements_{0};
  std::atomic<bool> link_up_{true};
  std::atomic<bool> announce_pending_{false};  // VIRTIO_NET_S_ANNOUNCE, until the driver's ACK
  std::atomic<bool> tap_gone_logged_{false};   // of this activation: every pair's worker reports it
  // VQ_PAIRS_SET's count: 1 after reset, the saved one after a restore; workers read it.
  std::atomic<unsigned> active_pairs_{1};
  // Of the current activation (0 / nullptr when not activated); read by the worker and announcer.
  std::atomic<uint64_t> features_{0};
  std::atomic<VirtioSignals*> signals_{nullptr};

  mutable std::mutex mu_;  // everything below (vCPU thread via the transport, VM thread)
  MacAddress mac_;
  bool quiesced_ = false;
  // hold_arrivals() or a restored state, not yet delivered: pair 0's worker delivers them first.
  std::vector<std::vector<uint8_t>> held_;

  // Pair 0's worker (set_pairs) reads the others and switches the tap's queues: activate and reset
  // change them under mu_ and this.
  std::mutex pairs_mu_;
  std::vector<std::unique_ptr<NetWorker>> workers_;  // [i]: pair i, for the pairs the driver set up

  // The announcer: one round now, the rest on QEMU's schedule; a new announce() starts over.
  std::mutex announce_mu_;
  std::condition_variable_any announce_cv_;
  unsigned announce_round_ = 0;    // the next round to send
  bool announce_started_ = false;  // announce() asked for a new series
  bool announce_held_ = false;     // quiesced: no round goes out until resume()
  std::jthread announcer_;  // declared last: stops first
};

}  // namespace minihv
