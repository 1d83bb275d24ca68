// vmm/boot/loader.h — the boot path's one entry point: put a kernel and everything it reads into
// guest memory and say how the boot vCPU starts.
//
// Owns: detecting the kernel format (ELF with a PVH note → PVH; bzImage → Linux 64-bit protocol),
// and the order of the boot steps: e820 → ACPI tables → MP table → command line → kernel → initrd →
// start_info or zero page → GDT (+ identity page tables for Linux64).
// Must not know: KVM fds. The VM owner calls, in this order:
//   1. GuestMemory::create(...)
//   2. load_kernel(mem, cfg) → BootPlan
//   3. create the vCPUs; on the boot vCPU (id 0) only:
//        KVM_SET_SREGS(boot_sregs(plan, KVM_GET_SREGS())), KVM_SET_REGS(boot_regs(plan)).
//      (CPUID, LAPIC LINT wiring and FPU on every vCPU are vmm/vcpu_setup.h's.)
//      Application processors keep KVM's reset state: the guest starts them with INIT/SIPI.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "vmm/boot/boot_plan.h"
#include "vmm/boot/firmware_config.h"
#include "vmm/memory.h"

namespace minihv::boot {

struct BootConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: no initrd
  std::string cmdline;
  unsigned num_cpus = 1;
  std::vector<VirtioMmioWindow> virtio_devices;  // described in the DSDT and the MP table
};

Result<BootPlan> load_kernel(GuestMemory& mem, const BootConfig& cfg);

}  // namespace minihv::boot
