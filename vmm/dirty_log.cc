#include "vmm/dirty_log.h"

#include <algorithm>
#include <string>

#include "vmm/kvm.h"
#include "vmm/layout.h"

namespace minihv {

const char* to_string(DirtyLogMode m) {
  switch (m) {
    case DirtyLogMode::kAuto: return "auto";
    case DirtyLogMode::kBitmap: return "bitmap";
    case DirtyLogMode::kRing: return "ring";
  }
  return "?";
}

Result<bool> ring_chosen(DirtyLogMode mode, bool hardware_kvm, size_t ring_max_bytes) {
  const size_t want = DirtyLog::kRingEntries * sizeof(kvm_dirty_gfn);
  if (mode == DirtyLogMode::kBitmap) return false;
  if (mode == DirtyLogMode::kAuto) return hardware_kvm && ring_max_bytes >= want;
  if (!hardware_kvm)
    return Status::invalid("--dirty-log ring needs hardware KVM (VT-x or AMD-V): a software KVM such as PVM "
                           "loses ring entries when guest kernel code writes memory with the ring full");
  if (ring_max_bytes < want)
    return Status::invalid("--dirty-log ring: this KVM has no dirty ring of " + std::to_string(want) +
                           " bytes (KVM_CAP_DIRTY_LOG_RING: " + std::to_string(ring_max_bytes) + ")");
  return true;
}

DirtyLog::RingCap DirtyLog::ring_offered(int vm_fd) {
  // ACQ_REL first: it says what the harvest does (acquire each entry's flags, release the reset);
  // x86 offers both, with the same rings. Each answers with the largest ring in bytes (0: none).
  for (uint32_t cap : {KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING}) {
    const int max = kvm_ioctl(vm_fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
    if (max > 0) return {cap, static_cast<size_t>(max)};
  }
  return {};
}

Status DirtyLog::enable(int vm_fd, DirtyLogMode mode, bool hardware_kvm) {
  vm_fd_ = vm_fd;
  const RingCap offered = hardware_kvm ? ring_offered(vm_fd) : RingCap{};
  auto ring = ring_chosen(mode, hardware_kvm, offered.max_bytes);
  if (!ring) return ring.status();
  return *ring ? enable_ring(offered.cap) : enable_bitmap();
}

Status DirtyLog::enable_ring(uint32_t cap_id) {
  kvm_enable_cap cap{};
  cap.cap = cap_id;
  cap.args[0] = kRingEntries * sizeof(kvm_dirty_gfn);
  int rc = kvm_ioctl(vm_fd_, KVM_ENABLE_CAP, &cap);
  if (rc < 0) return kvm_error("KVM_ENABLE_CAP DIRTY_LOG_RING", rc);
  ring_entries_ = kRingEntries;
  return Status::ok();
}

Status DirtyLog::enable_bitmap() {
  // The capability answers with the flags it supports (MANUAL_PROTECT_ENABLE | INITIALLY_SET).
  const int supported = kvm_ioctl(vm_fd_, KVM_CHECK_EXTENSION, static_cast<unsigned long>(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2));
  if (supported <= 0 || !(supported & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) return Status::ok();  // plain GET
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
  cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
  if (supported & KVM_DIRTY_LOG_INITIALLY_SET) cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
  int rc = kvm_ioctl(vm_fd_, KVM_ENABLE_CAP, &cap);
  if (rc < 0) return kvm_error("KVM_ENABLE_CAP MANUAL_DIRTY_LOG_PROTECT2", rc);
  manual_ = true;
  initially_set_ = cap.args[0] & KVM_DIRTY_LOG_INITIALLY_SET;
  return Status::ok();
}

size_t DirtyLog::bitmap_words(const GuestMemory& mem, size_t region) {
  return (mem.regions().at(region).size / layout::kPageSize + 63) / 64;
}

Status DirtyLog::set_slots(GuestMemory& mem, uint32_t flags) {
  const auto& regions = mem.regions();
  for (size_t i = 0; i < regions.size(); ++i) {
    kvm_userspace_memory_region r{};
    r.slot = static_cast<uint32_t>(i);
    r.flags = flags;
    r.guest_phys_addr = regions[i].gpa;
    r.memory_size = regions[i].size;
    r.userspace_addr = reinterpret_cast<uint64_t>(regions[i].host);
    int rc = kvm_ioctl(vm_fd_, KVM_SET_USER_MEMORY_REGION, &r);
    if (rc < 0) return kvm_error(("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(i) + " (dirty logging)").c_str(), rc);
  }
  return Status::ok();
}

void DirtyLog::add_ring(kvm_dirty_gfn* entries) {
  std::lock_guard lock(ring_mu_);
  rings_.push_back({entries});
}

size_t drain_dirty_ring(kvm_dirty_gfn* entries, uint32_t size, uint32_t& fetch,
                        std::vector<std::vector<uint64_t>>& bits) {
  size_t taken = 0;
  for (;; ++fetch, ++taken) {
    kvm_dirty_gfn& e = entries[fetch & (size - 1)];
    const uint32_t flags = __atomic_load_n(&e.flags, __ATOMIC_ACQUIRE);
    if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) return taken;
    const uint32_t slot = e.slot & 0xFFFF;  // the high half is the address space: always 0 here
    if (slot < bits.size() && e.offset / 64 < bits[slot].size()) bits[slot][e.offset / 64] |= 1ull << (e.offset % 64);
    __atomic_store_n(&e.flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
  }
}

// Every ring's dirty entries into ring_bits_, marked for reset, then one KVM_RESET_DIRTY_RINGS
// re-protects those pages (a later write pushes a new entry). Caller holds ring_mu_.
Status DirtyLog::collect_locked(GuestMemory& mem) {
  const auto& regions = mem.regions();
  ring_bits_.resize(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) ring_bits_[i].resize(bitmap_words(mem, i), 0);
  size_t taken = 0;
  for (Ring& r : rings_) taken += drain_dirty_ring(r.entries, ring_entries_, r.fetch, ring_bits_);
  if (taken == 0) return Status::ok();
  int rc = kvm_ioctl(vm_fd_, KVM_RESET_DIRTY_RINGS, 0ul);
  return rc < 0 ? kvm_error("KVM_RESET_DIRTY_RINGS", rc) : Status::ok();
}

Status DirtyLog::collect(GuestMemory& mem) {
  std::lock_guard lock(ring_mu_);
  return collect_locked(mem);
}

Status DirtyLog::harvest_ring(GuestMemory& mem, size_t region, std::span<uint64_t> bitmap) {
  std::lock_guard lock(ring_mu_);
  MINIHV_TRY(collect_locked(mem));
  std::vector<uint64_t>& bits = ring_bits_[region];
  std::copy(bits.begin(), bits.end(), bitmap.begin());
  std::fill(bits.begin(), bits.end(), 0);
  return Status::ok();
}

Status DirtyLog::start(GuestMemory& mem) {
  if (active_) return Status::error("dirty logging is already on");
  if (ring()) {  // entries left from an earlier, stopped log mean nothing now
    std::lock_guard lock(ring_mu_);
    MINIHV_TRY(collect_locked(mem));
    ring_bits_.clear();
  }
  MINIHV_TRY(set_slots(mem, KVM_MEM_LOG_DIRTY_PAGES));
  active_ = true;
  // Device writes from before this point are covered by the caller's first full pass.
  std::vector<uint64_t> scratch;
  for (size_t i = 0; i < mem.regions().size(); ++i) {
    scratch.assign(bitmap_words(mem, i), 0);
    mem.take_device_dirty(i, scratch);
  }
  return Status::ok();
}

Status DirtyLog::stop(GuestMemory& mem) {
  if (!active_) return Status::ok();
  MINIHV_TRY(set_slots(mem, 0));
  active_ = false;
  return Status::ok();
}

Status DirtyLog::harvest(GuestMemory& mem, size_t region, std::span<uint64_t> bitmap) {
  if (!active_) return Status::error("dirty logging is off: start it first");
  if (region >= mem.regions().size())
    return Status::error("dirty log: no memory region " + std::to_string(region));
  const size_t words = bitmap_words(mem, region);
  if (bitmap.size() < words)
    return Status::error("dirty log: bitmap of " + std::to_string(bitmap.size()) + " words, region " +
                         std::to_string(region) + " needs " + std::to_string(words));
  std::fill(bitmap.begin(), bitmap.end(), 0);
  if (ring()) {
    MINIHV_TRY(harvest_ring(mem, region, bitmap));
    mem.take_device_dirty(region, bitmap);
    return Status::ok();
  }
  kvm_dirty_log get{};
  get.slot = static_cast<uint32_t>(region);
  get.dirty_bitmap = bitmap.data();
  int rc = kvm_ioctl(vm_fd_, KVM_GET_DIRTY_LOG, &get);
  if (rc < 0) return kvm_error(("KVM_GET_DIRTY_LOG slot " + std::to_string(region)).c_str(), rc);
  if (manual_ && std::any_of(bitmap.begin(), bitmap.begin() + static_cast<ptrdiff_t>(words), [](uint64_t w) { return w; })) {
    // Re-protect exactly the pages just reported; a write after this sets its bit again.
    kvm_clear_dirty_log clear{};
    clear.slot = static_cast<uint32_t>(region);
    clear.first_page = 0;
    clear.num_pages = static_cast<uint32_t>(mem.regions()[region].size / layout::kPageSize);
    clear.dirty_bitmap = bitmap.data();
    rc = kvm_ioctl(vm_fd_, KVM_CLEAR_DIRTY_LOG, &clear);
    if (rc < 0) return kvm_error(("KVM_CLEAR_DIRTY_LOG slot " + std::to_string(region)).c_str(), rc);
  }
  mem.take_device_dirty(region, bitmap);
  return Status::ok();
}

}  // namespace minihv
