#include "vmm/irq_kvm.h"

#include <linux/kvm.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/kvm.h"

namespace minihv {

Result<std::unique_ptr<KvmIrqLine>> KvmIrqLine::create(int vm_fd, unsigned gsi) {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) return Status::from_errno("eventfd for irq " + std::to_string(gsi));
  kvm_irqfd req{};
  req.fd = static_cast<uint32_t>(fd.get());
  req.gsi = gsi;
  int rc = kvm_ioctl(vm_fd, KVM_IRQFD, &req);
  if (rc < 0) return kvm_error(("KVM_IRQFD gsi " + std::to_string(gsi)).c_str(), rc);
  return std::unique_ptr<KvmIrqLine>(new KvmIrqLine(gsi, std::move(fd)));
}

void KvmIrqLine::trigger() {
  uint64_t one = 1;
  (void)!::write(fd_.get(), &one, sizeof one);
}

}  // namespace minihv
