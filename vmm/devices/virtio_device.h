// vmm/devices/virtio_device.h — what a virtio device (blk, net, ...) implements for a transport.
//
// Owns: the contract between a transport (VirtioMmio) and a device: identity, features, config
// space, activation with live queues, reset, quiesce/resume and device-specific saved state.
// Must not know: registers, KVM, or which transport carries it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "vmm/devices/virtqueue.h"
#include "vmm/memory.h"

namespace minihv {

// How a device tells the driver something happened. Implemented by the transport; callable from
// any device thread at any time, lock-free (never waits on the transport).
class VirtioSignals {
public:
  virtual ~VirtioSignals() = default;
  // Used-buffer notification (the caller already consulted Virtqueue::should_notify()).
  virtual void signal_used() = 0;
  // Configuration-change notification.
  virtual void signal_config() = 0;
  // The device hit an error it cannot recover from (a broken ring): sets DEVICE_NEEDS_RESET and
  // sends a configuration-change notification, as the spec says.
  virtual void set_needs_reset() = 0;
};

// Everything a device gets when the driver sets DRIVER_OK (or a restore re-activates it). The
// queues are activated (rings checked against RAM) and stay put until reset() returns.
struct VirtioActivation {
  GuestMemory* mem = nullptr;
  std::span<Virtqueue> queues;
  std::span<const int> notify_fds;  // one eventfd per queue, signalled on each driver kick
  uint64_t features = 0;            // negotiated
  VirtioSignals* signals = nullptr;
};

// For read_config(): bytes [offset, offset + len) of a config space `cfg` of `size` bytes; what lies
// beyond it reads as zero.
inline void copy_config_window(const uint8_t* cfg, uint32_t size, uint64_t offset, uint8_t* data, uint32_t len) {
  for (uint32_t i = 0; i < len; ++i) data[i] = offset + i < size ? cfg[offset + i] : 0;
}

class VirtioDevice {
public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Device-specific and ring feature bits offered (the transport adds VIRTIO_F_VERSION_1).
  virtual uint64_t features() const = 0;
  virtual unsigned num_queues() const = 0;
  virtual uint16_t queue_max_size() const = 0;

  // Config space (window offset 0x100 + `offset`); out-of-range bytes read as zero.
  virtual void read_config(uint64_t offset, uint8_t* data, uint32_t len) const = 0;
  virtual void write_config(uint64_t offset, const uint8_t* data, uint32_t len) = 0;

  // Start using the queues. An error leaves the device inactive (the transport sets NEEDS_RESET).
  virtual Status activate(const VirtioActivation& act) = 0;
  // Stop using the queues: when this returns, no request is in flight and guest memory and the
  // queues are no longer touched. Safe to call when not activated.
  virtual void reset() = 0;

  // Pause/resume request processing for migration or a paused VM. quiesce() returns after all
  // in-flight I/O completed and was flushed; a device quiesced before activate() stays quiesced.
  virtual Status quiesce() { return Status::ok(); }
  virtual void resume() {}

  // Device-specific state beyond the transport and queues (may be empty).
  virtual std::vector<uint8_t> save_state() const { return {}; }
  virtual Status restore_state(std::span<const uint8_t> blob) {
    return blob.empty() ? Status::ok() : Status::error("unexpected device state");
  }
};

}  // namespace minihv
