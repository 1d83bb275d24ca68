#include "vmm/dirty_log.h"

#include <algorithm>
#include <string>

#include "vmm/kvm.h"
#include "vmm/layout.h"

namespace minihv {

Status DirtyLog::enable(int vm_fd) {
  vm_fd_ = vm_fd;
  // The capability answers with the flags it supports (MANUAL_PROTECT_ENABLE | INITIALLY_SET).
  const int supported = kvm_ioctl(vm_fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2));
  if (supported <= 0 || !(supported & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) return Status::ok();  // plain GET
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
  cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
  if (supported & KVM_DIRTY_LOG_INITIALLY_SET) cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
  int rc = kvm_ioctl(vm_fd, KVM_ENABLE_CAP, &cap);
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

Status DirtyLog::start(GuestMemory& mem) {
  if (active_) return Status::error("dirty logging is already on");
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
