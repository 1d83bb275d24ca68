#include "vmm/boot/cpu_setup.h"

#include "vmm/boot/gdt.h"
#include "vmm/layout.h"

namespace minihv::boot {

kvm_regs boot_regs(const BootPlan& plan) {
  kvm_regs r{};
  r.rflags = kRflagsReserved;
  r.rip = plan.entry;
  r.rsp = plan.stack;
  r.rbp = plan.stack;
  if (plan.mode == BootMode::kPvh)
    r.rbx = plan.boot_info;  // PVH ABI: EBX = hvm_start_info
  else
    r.rsi = plan.boot_info;  // Linux 64-bit protocol: RSI = boot_params
  return r;
}

kvm_sregs boot_sregs(const BootPlan& plan, const kvm_sregs& current) {
  constexpr Gdt gdt = boot_gdt();
  kvm_sregs s = current;
  const bool long_mode = plan.mode == BootMode::kLinux64;
  const uint16_t cs_sel = long_mode ? kSelCode64 : kSelCode32;
  s.cs = segment_from_gdt(gdt[cs_sel / 8], cs_sel);
  const kvm_segment data = segment_from_gdt(gdt[kSelData / 8], kSelData);
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr = segment_from_gdt(gdt[kSelTss / 8], kSelTss);
  s.gdt.base = layout::kGdtAddr;
  s.gdt.limit = static_cast<uint16_t>(sizeof(Gdt) - 1);
  s.idt.base = 0;  // no IDT: interrupts stay off until the kernel installs its own
  s.idt.limit = 0;
  if (long_mode) {
    s.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    s.cr3 = layout::kPml4;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
  } else {
    s.cr0 = kCr0Pe | kCr0Et;  // PVH: paging off
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
  }
  return s;
}

Status write_boot_gdt(GuestMemory& mem) {
  constexpr Gdt gdt = boot_gdt();
  return mem.write(layout::kGdtAddr, gdt.data(), sizeof gdt).context("writing the boot GDT");
}

Status write_identity_page_tables(GuestMemory& mem) {
  constexpr uint64_t kTableFlags = kPtePresent | kPteWritable;
  constexpr uint64_t kEntries = layout::kPageSize / sizeof(uint64_t);
  // Whole pages: entries past the first must read as not-present even if the memory was reused.
  uint64_t pml4[kEntries] = {};
  pml4[0] = layout::kPdpt | kTableFlags;
  MINIHV_TRY(mem.write(layout::kPml4, pml4, sizeof pml4).context("writing the PML4"));
  uint64_t pdpt[kEntries] = {};
  for (unsigned i = 0; i < kIdentityMapGiB; ++i) {
    const uint64_t pd = layout::kPd + i * layout::kPageSize;
    pdpt[i] = pd | kTableFlags;
    uint64_t entries[kEntries];
    for (uint64_t j = 0; j < kEntries; ++j)
      entries[j] = ((i * kEntries + j) * 2 * layout::kMiB) | kTableFlags | kPteHuge;
    MINIHV_TRY(mem.write(pd, entries, sizeof entries).context("writing a page directory"));
  }
  return mem.write(layout::kPdpt, pdpt, sizeof pdpt).context("writing the PDPT");
}

}  // namespace minihv::boot
