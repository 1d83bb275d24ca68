// vmm/boot/cpu_setup.h — the boot vCPU's initial state, and the tables that state points at.
//
// Owns: the pure functions that compute kvm_regs/kvm_sregs for each BootMode (the VM owner passes
// them to KVM_SET_REGS/SREGS on the boot vCPU only: application processors wait for INIT/SIPI from
// the guest), and writing the boot GDT and the 0–4 GiB identity page tables into guest memory.
// LAPIC LINT wiring and the reset FPU are vmm/vcpu_setup.h's.
// Must not know: the KVM fds (the VM owner makes the ioctls), kernel formats.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "common/status.h"
#include "vmm/boot/boot_plan.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr uint64_t kCr0Pe = 1ull << 0;   // protected mode
constexpr uint64_t kCr0Et = 1ull << 4;   // extension type: always 1 on anything since the 486
constexpr uint64_t kCr0Pg = 1ull << 31;  // paging
constexpr uint64_t kCr4Pae = 1ull << 5;  // long mode requires PAE paging
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr uint64_t kRflagsReserved = 1ull << 1;  // bit 1 always reads 1; IF stays clear

// Page-table entry bits for the identity map.
constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteHuge = 1ull << 7;  // 2 MiB page in a PD entry
constexpr unsigned kIdentityMapGiB = 4;   // PDPT entries filled, one PD page each

// General registers at the entry point: RIP, EBX/RSI = boot info, RSP, RFLAGS.
kvm_regs boot_regs(const BootPlan& plan);
// `current` is what KVM_GET_SREGS returned (keeps APIC base, interrupt bitmap); segments, GDT/IDT,
// CR0/CR3/CR4 and EFER are replaced for `plan.mode`.
kvm_sregs boot_sregs(const BootPlan& plan, const kvm_sregs& current);

// Writes the boot GDT (gdt.h) at layout::kGdtAddr.
Status write_boot_gdt(GuestMemory& mem);
// Writes PML4 → PDPT → 4 PDs of 2 MiB pages mapping 0–4 GiB 1:1 at layout::kPml4/kPdpt/kPd.
Status write_identity_page_tables(GuestMemory& mem);

}  // namespace minihv::boot
