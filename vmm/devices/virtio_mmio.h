// vmm/devices/virtio_mmio.h — the virtio-mmio transport, version 2 only (VIRTIO 1.2 §4.2).
//
// Owns: the register file of one virtio-mmio window, feature negotiation, the device status state
// machine, queue configuration, interrupts (InterruptStatus + IrqLine), the queue-notify eventfds
// (one per queue; KVM ioeventfds attach to them) and the transport's save-state blob.
// Must not know: KVM (the Vm attaches ioeventfd/irqfd from the outside), what the device does.
//
// Threads: bus_read/bus_write come from any vCPU thread and are serialised by a mutex; the device's
// own thread signals interrupts and NEEDS_RESET lock-free (VirtioSignals).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "vmm/bus.h"
#include "vmm/devices/irq.h"
#include "vmm/devices/virtio_device.h"
#include "vmm/devices/virtio_spec.h"
#include "vmm/devices/virtqueue.h"
#include "vmm/memory.h"

namespace minihv {

class VirtioMmio final : public BusDevice, private VirtioSignals {
public:
  // `mem` and `irq` must outlive the transport; the transport owns the device.
  static Result<std::unique_ptr<VirtioMmio>> create(GuestMemory& mem, IrqLine& irq,
                                                    std::unique_ptr<VirtioDevice> device);
  ~VirtioMmio() override;  // resets the device first: its I/O stops before anything is freed
  VirtioMmio(const VirtioMmio&) = delete;
  VirtioMmio& operator=(const VirtioMmio&) = delete;

  void bus_read(uint64_t offset, uint8_t* data, uint32_t len) override;
  void bus_write(uint64_t offset, const uint8_t* data, uint32_t len) override;

  // QueueNotify's offset in the window: attach a KVM ioeventfd at window base + kNotifyOffset,
  // 4 bytes, datamatch = queue index, to notify_eventfd(queue). Without one, a bus_write of the
  // register signals the same eventfd, so both paths behave alike.
  static constexpr uint64_t kNotifyOffset = virtio::mmio::kQueueNotify;
  static constexpr uint32_t kNotifyLen = 4;
  unsigned num_queues() const { return static_cast<unsigned>(queues_.size()); }
  int notify_eventfd(unsigned queue) const { return notify_raw_.at(queue); }

  VirtioDevice& device() { return *device_; }
  uint32_t status() const { return status_.load(); }
  uint32_t interrupt_status() const { return interrupt_status_.load(); }

  // Transport + queue + device state as a versioned blob (layout: docs/virtio.md). Call while
  // the device is quiesced (device().quiesce()) or not activated.
  std::vector<uint8_t> save() const;
  // Validates every field first; on error nothing of the blob is applied (the device is left
  // reset). A blob with DRIVER_OK re-activates the device.
  Status restore(std::span<const uint8_t> blob);

private:
  VirtioMmio(GuestMemory& mem, IrqLine& irq, std::unique_ptr<VirtioDevice> device);

  // VirtioSignals (device thread).
  void signal_used() override;
  void signal_config() override;
  void set_needs_reset() override;

  uint32_t read_register(uint64_t offset) const;
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void write_queue_register(uint64_t offset, uint32_t value);
  uint64_t offered_features() const;
  bool features_acceptable(uint64_t driver_features) const;
  Status activate_locked();
  void reset_locked();
  Virtqueue* selected_queue();
  const Virtqueue* selected_queue() const;

  GuestMemory& mem_;
  IrqLine& irq_;
  std::unique_ptr<VirtioDevice> device_;

  mutable std::mutex mu_;  // the register file; never held by the device thread
  std::atomic<uint32_t> status_{0};
  std::atomic<uint32_t> interrupt_status_{0};
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t config_generation_ = 0;
  bool activated_ = false;
  std::vector<Virtqueue> queues_;
  std::vector<UniqueFd> notify_fds_;
  std::vector<int> notify_raw_;
};

}  // namespace minihv
