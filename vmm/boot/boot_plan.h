// vmm/boot/boot_plan.h — what the loader hands the VM owner: how the boot vCPU starts.
//
// Owns: BootMode and BootPlan (plain data). Made by load_kernel() (loader.h), read by
// boot_regs()/boot_sregs() (cpu_setup.h).
#pragma once

#include <cstdint>

namespace minihv::boot {

enum class BootMode {
  kPvh,      // 32-bit protected mode, paging off, EBX = hvm_start_info (Xen PVH ABI)
  kLinux64,  // long mode on identity page tables, RSI = zero page (Linux 64-bit boot protocol)
};

struct BootPlan {
  BootMode mode = BootMode::kPvh;
  uint64_t entry = 0;        // EIP (PVH) or RIP (Linux64)
  uint64_t boot_info = 0;    // EBX = start_info (PVH) or RSI = zero page (Linux64)
  uint64_t stack = 0;        // initial RSP
  uint64_t kernel_start = 0; // guest-physical range the kernel image occupies (incl. its init_size)
  uint64_t kernel_end = 0;
  uint64_t initrd_addr = 0;  // 0 when there is no initrd
  uint64_t initrd_size = 0;
  uint64_t rsdp_addr = 0;    // ACPI RSDP the guest is told about
};

}  // namespace minihv::boot
