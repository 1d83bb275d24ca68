// vmm/dirty_log.h — which guest pages changed: KVM's dirty bitmap OR the VMM's device bitmap.
//
// Owns: enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on a VM, switching KVM_MEM_LOG_DIRTY_PAGES on
// and off for every memslot, and harvesting one slot (GET, then CLEAR exactly the bits returned,
// then OR GuestMemory's device bitmap). Falls back to plain KVM_GET_DIRTY_LOG (which clears as it
// reads) without MANUAL_PROTECT2. Or KVM's dirty ring (KVM_CAP_DIRTY_LOG_RING_ACQ_REL, else
// KVM_CAP_DIRTY_LOG_RING): each vCPU pushes the pages it writes to a ring mapped here; a harvest
// collects every ring and resets them. The ring only on hardware KVM (PVM loses entries or
// livelocks when guest ring-0 code writes with the ring full): kAuto takes it there when KVM
// offers a ring of kRingEntries (a harvest then costs what was dirtied, not what the guest has),
// the bitmap elsewhere (docs/vm-state.md).
// Must not know: migration, what the caller does with the bits.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "common/status.h"
#include "vmm/memory.h"

namespace minihv {


enum class DirtyLogMode { kAuto, kBitmap, kRing };

// Reads one KVM dirty ring of `size` entries (a power of two) from `fetch` while entries are
// dirty: sets each page's bit in bits[slot] (an entry outside `bits` is skipped), marks the entry
// for reset, advances `fetch`. Returns how many entries it took.
size_t drain_dirty_ring(kvm_dirty_gfn* entries, uint32_t size, uint32_t& fetch,
                        std::vector<std::vector<uint64_t>>& bits);
const char* to_string(DirtyLogMode m);
// Whether enable() takes the ring (else the bitmap) for `mode` on a KVM that is hardware KVM or
// not and offers rings of at most `ring_max_bytes` (0: none); kRing where it cannot be had is refused.
Result<bool> ring_chosen(DirtyLogMode mode, bool hardware_kvm, size_t ring_max_bytes);

class DirtyLog {
public:
  // Entries in each vCPU's ring (16 bytes each): 64 KiB per vCPU, as QEMU's dirty-ring-size default
  // suggests; a full ring makes the vCPU exit and wait for a collection.
  static constexpr uint32_t kRingEntries = 4096;

  // Call once right after KVM_CREATE_VM, before any memslot or vCPU exists. `hardware_kvm`: KVM
  // runs on VT-x or AMD-V and is not PVM (kRing is refused elsewhere, kAuto takes the bitmap).
  Status enable(int vm_fd, DirtyLogMode mode, bool hardware_kvm);

  bool ring() const { return ring_entries_ != 0; }
  size_t ring_bytes() const { return ring_entries_ * sizeof(kvm_dirty_gfn); }
  // Each vCPU's mapped ring (ring_bytes() long), once, before the VM runs.
  void add_ring(kvm_dirty_gfn* entries);
  // A vCPU's ring is full (KVM_EXIT_DIRTY_RING_FULL): collect every ring now, so it can go on.
  Status collect(GuestMemory& mem);
  const char* method() const { return ring() ? "ring" : manual_ ? "bitmap (manual protect)" : "bitmap"; }

  bool manual_protect() const { return manual_; }
  bool initially_set() const { return initially_set_; }
  bool active() const { return active_; }

  // Re-registers every region of `mem` (slot i = region i) with or without KVM_MEM_LOG_DIRTY_PAGES.
  Status start(GuestMemory& mem);
  Status stop(GuestMemory& mem);
  // One bit per 4 KiB page of region `region`; `bitmap` must hold bitmap_words(region) words and
  // is overwritten. Pages written by KVM-run guest code or by a device since the last harvest.
  Status harvest(GuestMemory& mem, size_t region, std::span<uint64_t> bitmap);
  static size_t bitmap_words(const GuestMemory& mem, size_t region);

private:
  struct RingCap {
    uint32_t cap = 0;      // KVM_CAP_DIRTY_LOG_RING_ACQ_REL or KVM_CAP_DIRTY_LOG_RING
    size_t max_bytes = 0;  // the largest ring it makes (0: none)
  };
  static RingCap ring_offered(int vm_fd);
  Status enable_ring(uint32_t cap_id);
  Status enable_bitmap();  // MANUAL_PROTECT2 (with INITIALLY_SET) where offered, else plain GET

  struct Ring {
    kvm_dirty_gfn* entries;
    uint32_t fetch = 0;  // next entry to read; KVM's producer index is not visible
  };
  Status set_slots(GuestMemory& mem, uint32_t flags);
  Status collect_locked(GuestMemory& mem);
  Status harvest_ring(GuestMemory& mem, size_t region, std::span<uint64_t> bitmap);
  int vm_fd_ = -1;
  uint32_t ring_entries_ = 0;
  std::mutex ring_mu_;                             // rings_, ring_bits_: the harvester and full vCPUs
  std::vector<Ring> rings_;
  std::vector<std::vector<uint64_t>> ring_bits_;  // per region: collected, not yet harvested
  bool manual_ = false;
  bool initially_set_ = false;
  bool active_ = false;
};

}  // namespace minihv
