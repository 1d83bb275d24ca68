// vmm/dirty_log.h — which guest pages changed: KVM's dirty bitmap OR the VMM's device bitmap.
//
// Owns: enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on a VM, switching KVM_MEM_LOG_DIRTY_PAGES on
// and off for every memslot, and harvesting one slot (GET, then CLEAR exactly the bits returned,
// then OR GuestMemory's device bitmap). Falls back to plain KVM_GET_DIRTY_LOG (which clears as it
// reads) without MANUAL_PROTECT2. Never the dirty ring: see docs/vm-state.md (PVM loses entries
// or livelocks when guest ring-0 code writes with the ring full; the bitmap APIs are exact).
// Must not know: migration, what the caller does with the bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/status.h"
#include "vmm/memory.h"

namespace minihv {


class DirtyLog {
public:
  // Call once right after KVM_CREATE_VM, before any memslot exists.
  Status enable(int vm_fd);

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
  Status set_slots(GuestMemory& mem, uint32_t flags);
  int vm_fd_ = -1;
  bool manual_ = false;
  bool initially_set_ = false;
  bool active_ = false;
};

}  // namespace minihv
