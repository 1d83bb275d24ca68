// vmm/devices/virtio_blk.h — virtio-blk (VIRTIO 1.2 §5.2) on a BlockBackend, I/O through io_uring.
//
// Owns: the device's identity, features and config space, its I/O worker (one thread per
// activation, see virtio_blk_worker.h), quiesce/resume and the I/O statistics.
// Must not know: the transport registers, KVM, leases (the caller decides when I/O may run).
//
// Wiring (the VM):
//   auto backend = BlockBackend::open_file(path, {});
//   auto blk = VirtioBlk::create(std::move(*backend));
//   VirtioBlk* disk = blk->get();
//   auto dev = VirtioMmio::create(mem, irq, std::move(*blk));    // window i, IRQ kVirtioIrqBase+i
//   bus.add(kVirtioMmioBase + i*kVirtioMmioSize, kVirtioMmioSize, dev->get());
//   KVM_IOEVENTFD {addr = window + VirtioMmio::kNotifyOffset, len 4, datamatch 0,
//                  fd = dev->notify_eventfd(0)};
//   disk->quiesce() / disk->resume() / disk->stats().
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "vmm/devices/virtio_blk_backend.h"
#include "vmm/devices/virtio_blk_worker.h"
#include "vmm/devices/virtio_device.h"

namespace minihv {

class VirtioBlk final : public VirtioDevice {
public:
  static constexpr uint16_t kQueueSize = 256;
  // Data segments per request we promise to take (header and status need two more descriptors).
  static constexpr uint32_t kSegMax = kQueueSize - 2;

  // `serial` answers GET_ID (at most 20 bytes are used); empty = derived from the backend name.
  static Result<std::unique_ptr<VirtioBlk>> create(BlockBackend backend, std::string serial = "");
  ~VirtioBlk() override;

  // --- VirtioDevice ---
  uint32_t device_id() const override;
  uint64_t features() const override;
  unsigned num_queues() const override { return 1; }
  uint16_t queue_max_size() const override { return kQueueSize; }
  void read_config(uint64_t offset, uint8_t* data, uint32_t len) const override;
  void write_config(uint64_t offset, const uint8_t* data, uint32_t len) override;
  Status activate(const VirtioActivation& act) override;
  void reset() override;
  // Stops taking requests, waits for in-flight I/O and fdatasyncs the backend. The device stays
  // quiesced (even across reset/activate, e.g. a restore on a migration destination) until resume().
  Status quiesce() override;
  void resume() override;
  std::vector<uint8_t> save_state() const override;
  Status restore_state(std::span<const uint8_t> blob) override;

  struct Stats {
    uint64_t reads = 0, writes = 0, flushes = 0, read_bytes = 0, write_bytes = 0, errors = 0;
    uint64_t bounce_bytes = 0;  // aligned copies held now (at most BlkWorker::kBounceBudget)
  };
  Stats stats() const;
  const BlockBackend& backend() const { return backend_; }
  bool quiesced() const;
  // What a failed read or write does from the next activation on (default: reported to the guest).
  void set_error_policy(DiskErrorPolicy policy);
  // Requests parked on an I/O error (on-error=stop); resume() retries them, and so does retry().
  unsigned parked_requests() const;
  // Retries parked requests of a device that is not quiesced (the VM's `resume`).
  void retry();

private:
  VirtioBlk(BlockBackend backend, std::string serial);

  BlockBackend backend_;
  std::string serial_;
  BlkStats stats_;
  DiskErrorPolicy policy_;
  mutable std::mutex mu_;  // worker_ and quiesced_ (vCPU thread via the transport, VM thread)
  bool quiesced_ = false;
  std::unique_ptr<BlkWorker> worker_;
};

}  // namespace minihv
