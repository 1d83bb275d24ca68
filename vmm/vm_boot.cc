// Vm: loading the guest and setting the boot vCPU's registers.
#include "common/log.h"
#include "vmm/boot/cpu_setup.h"
#include "vmm/boot/loader.h"
#include "vmm/vcpu_setup.h"
#include "vmm/vm.h"

namespace minihv {

Status Vm::load_guest() {
  boot::BootConfig cfg;
  cfg.kernel_path = config_.kernel;
  cfg.initrd_path = config_.initrd;
  cfg.cmdline = config_.cmdline;
  cfg.num_cpus = config_.cpus;
  cfg.virtio_devices = virtio_windows();
  auto plan = boot::load_kernel(*mem_, cfg);
  // Everything load_kernel can refuse comes from the user's files and flags.
  if (!plan) return Status::invalid(plan.message());
  Vcpu& bsp = *vcpus_.at(0);
  kvm_sregs current{};
  int rc = kvm_ioctl(bsp.fd(), KVM_GET_SREGS, &current);
  if (rc < 0) return kvm_error("KVM_GET_SREGS (vcpu 0)", rc);
  LOG_INFO("booting %s: %s entry 0x%llx", config_.kernel.c_str(),
           plan->mode == boot::BootMode::kPvh ? "PVH" : "Linux 64-bit", static_cast<unsigned long long>(plan->entry));
  return set_vcpu_registers(bsp, boot::boot_regs(*plan), boot::boot_sregs(*plan, current));
}

}  // namespace minihv
