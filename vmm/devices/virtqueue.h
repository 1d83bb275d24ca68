// vmm/devices/virtqueue.h — one split virtqueue (VIRTIO 1.2 §2.7), seen from the device side.
//
// Owns: the queue's configuration (size, ready, ring addresses), walking the descriptor chains the
// driver makes available with every check a hostile guest needs (see docs/virtio.md, "Queue
// validation"), returning used buffers, interrupt suppression (EVENT_IDX, NO_INTERRUPT) and the
// queue's migratable state.
// Must not know: the transport (mmio) or what a device does with the buffers.
//
// Threads: the transport configures a queue only while the device is not activated; after
// activate(), one device thread calls pop()/add_used()/should_notify(). save()/restore() need the
// device quiesced or not activated.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "vmm/memory.h"

namespace minihv {

// Why a ring or a chain was refused. Anything but kNone means the guest broke the rules.
enum class QueueError : uint8_t {
  kNone,
  kRingOutsideRam,        // descriptor table / avail / used ring not inside guest RAM
  kBadConfig,             // size not a power of two, misaligned ring, ready with size 0
  kAvailIdxJump,          // avail idx ran more than the queue size ahead of what we consumed
  kHeadOutOfRange,        // avail ring names a descriptor >= queue size
  kDescOutsideRam,        // a buffer is not entirely inside guest RAM (incl. addr+len wrapping)
  kNextOutOfRange,        // `next` >= queue size (or >= indirect table entries)
  kChainTooLong,          // more descriptors than the queue size allows: a loop or a hostile chain
  kIndirectNotNegotiated, // INDIRECT flag without VIRTIO_RING_F_INDIRECT_DESC
  kIndirectWithNext,      // INDIRECT and NEXT in one descriptor
  kIndirectBadSize,       // indirect table empty, not a multiple of 16 bytes, or too large
  kIndirectOutsideRam,    // the indirect table itself is not inside guest RAM
  kNestedIndirect,        // an INDIRECT descriptor inside an indirect table
  kReadAfterWrite,        // a device-readable descriptor after a device-writable one
};
const char* queue_error_name(QueueError e);

// One validated buffer of a chain: [gpa, gpa+len) is inside guest RAM and `host` points at it.
struct VirtqBuffer {
  uint64_t gpa = 0;
  uint32_t len = 0;
  bool writable = false;
  uint8_t* host = nullptr;
};

// One entry of the used ring: a chain's head and how many bytes the device wrote into it.
struct UsedElem {
  uint16_t head = 0;
  uint32_t len = 0;
};

struct DescriptorChain {
  uint16_t head = 0;
  std::vector<VirtqBuffer> buffers;     // validated, in chain order (indirect tables flattened)
  QueueError error = QueueError::kNone; // set when the chain broke after `buffers`
  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;
};

// The migratable state of a queue: fixed-size, plain data (VirtioMmio serialises it).
struct VirtqueueState {
  uint16_t size = 0;
  bool ready = false;
  uint64_t desc_gpa = 0, driver_gpa = 0, device_gpa = 0;
  uint16_t last_avail_idx = 0;
  uint16_t used_idx = 0;
  uint16_t signalled_used = 0;
  bool signalled_used_valid = false;
};

class Virtqueue {
public:
  explicit Virtqueue(uint16_t max_size);

  // --- configuration (transport, device not activated) ---
  uint16_t max_size() const { return max_size_; }
  uint16_t size() const { return st_.size; }
  bool ready() const { return st_.ready; }
  uint64_t desc_gpa() const { return st_.desc_gpa; }
  uint64_t driver_gpa() const { return st_.driver_gpa; }
  uint64_t device_gpa() const { return st_.device_gpa; }
  void set_size(uint16_t size) { st_.size = size; }
  void set_ready(bool ready) { st_.ready = ready; }
  void set_desc_gpa(uint64_t gpa) { st_.desc_gpa = gpa; }
  void set_driver_gpa(uint64_t gpa) { st_.driver_gpa = gpa; }
  void set_device_gpa(uint64_t gpa) { st_.device_gpa = gpa; }
  // Power-on state: not ready, size = max, addresses and indices 0, detached from memory.
  void reset();

  // Checks the configuration against guest RAM and the negotiated features, and attaches the
  // queue to `mem`. Only a ready queue can be activated. Returns the QueueError as a message.
  Status activate(GuestMemory& mem, uint64_t features);
  bool active() const { return mem_ != nullptr; }

  // --- runtime (one device thread, after activate) ---
  enum class Pop {
    kEmpty,     // nothing available
    kChain,     // `out` holds a complete, valid chain
    kBadChain,  // `out.head` is a real head; `out.buffers` is the valid prefix; `out.error` why
    kBroken,    // the ring itself is unusable (broken_reason()); the device needs a reset
  };
  Pop pop(DescriptorChain& out);
  QueueError broken_reason() const { return broken_; }
  // Puts `head` back with `len` bytes written by the device; marks the used ring dirty.
  void add_used(uint16_t head, uint32_t len);
  // Puts several chains back with one index update, so the driver sees all of them or none (the
  // buffers of one merged RX frame).
  void add_used(std::span<const UsedElem> elems);
  // Takes back the last `n` chains popped and not yet used, as if they had never been popped (a
  // device that found too little room for a frame). n must not exceed what was popped.
  void rewind(uint16_t n);
  // Whether the driver should kick after making buffers available. Without EVENT_IDX this is the
  // used ring's NO_NOTIFY flag; with EVENT_IDX pop() already asks for a kick only once it found the
  // ring empty, so it does nothing. After turning kicks on, look at pending() once more: buffers
  // the driver added before it saw the request came without a kick.
  void set_kicks(bool wanted);
  // True when the driver wants an interrupt for what was added since the last call.
  bool should_notify();
  // Requests not yet popped (avail idx - last_avail_idx); 0 for an inactive queue.
  uint16_t pending() const;

  VirtqueueState save() const { return st_; }
  // Takes a saved state (checked against max_size; rings are checked by activate()).
  Status restore(const VirtqueueState& st);

private:
  QueueError walk(uint16_t head, DescriptorChain& out) const;
  QueueError walk_indirect(uint64_t table_gpa, uint32_t table_len, DescriptorChain& out) const;
  QueueError append(uint64_t addr, uint32_t len, uint16_t flags, DescriptorChain& out) const;
  uint16_t load_avail_idx() const;
  void publish_avail_event();
  Pop fail(QueueError e);

  uint16_t max_size_;
  VirtqueueState st_;
  GuestMemory* mem_ = nullptr;  // set by activate()
  bool indirect_ = false, event_idx_ = false;
  uint8_t* desc_ = nullptr;   // host views of the three rings, valid while active
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  QueueError broken_ = QueueError::kNone;
};

}  // namespace minihv
