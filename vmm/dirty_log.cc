#include "vmm/dirty_log.h"

#include "vmm/layout.h"

namespace minihv {

Status DirtyLog::enable(int vm_fd, const Kvm&) {
  vm_fd_ = vm_fd;
  return Status::ok();
}
Status DirtyLog::start(GuestMemory&) { return Status::error("dirty log: not implemented yet"); }
Status DirtyLog::stop(GuestMemory&) { return Status::error("dirty log: not implemented yet"); }
Status DirtyLog::harvest(GuestMemory&, size_t, std::span<uint64_t>) {
  return Status::error("dirty log: not implemented yet");
}
size_t DirtyLog::bitmap_words(const GuestMemory& mem, size_t region) {
  return (mem.regions().at(region).size / layout::kPageSize + 63) / 64;
}
Status DirtyLog::set_slots(GuestMemory&, uint32_t) { return Status::ok(); }

}  // namespace minihv
