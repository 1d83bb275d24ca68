// vmm/layout.h — every guest-physical address, port and IRQ minihv uses, in one place.
//
// The low 1 MiB holds the boot structures; RAM runs from 0 to the 32-bit MMIO gap and continues
// above 4 GiB. Devices live in the gap. Nothing else in minihv writes a literal guest address.
#pragma once

#include <cstdint>

namespace minihv::layout {

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
constexpr uint64_t kPageSize = 4096;

// --- low memory: boot structures (all below the 640 KiB EBDA limit) ---
constexpr uint64_t kGdtAddr = 0x500;          // boot GDT (null, code32, code64, data, TSS: boot/gdt.h)
constexpr uint64_t kPvhStartInfo = 0x6000;    // hvm_start_info
constexpr uint64_t kPvhMemmap = 0x6100;       // hvm_memmap_table_entry[], after start_info
constexpr uint64_t kPvhModlist = 0x6800;      // hvm_modlist_entry[] (initrd)
constexpr uint64_t kZeroPage = 0x7000;        // Linux boot_params
constexpr uint64_t kPml4 = 0x9000;            // identity page tables for 64-bit entry
constexpr uint64_t kPdpt = 0xA000;
constexpr uint64_t kPd = 0xB000;              // 4 pages: 4 GiB of 2 MiB pages
constexpr uint64_t kBootStack = 0x8ff0;       // initial RSP for 64-bit entries
constexpr uint64_t kCmdline = 0x20000;
constexpr uint64_t kCmdlineMax = 0x10000;
constexpr uint64_t kEbdaStart = 0x9fc00;      // RAM below this is usable (e820 type 1)
constexpr uint64_t kAcpiStart = 0xE0000;      // RSDP and ACPI tables (BIOS search area)
constexpr uint64_t kAcpiEnd = 0xF0000;
constexpr uint64_t kMptableStart = 0xF0000;   // MP floating pointer + config table
constexpr uint64_t kBiosEnd = 0x100000;

// --- kernel and initrd ---
constexpr uint64_t kHighMem = 0x100000;       // 1 MiB: bzImage protected-mode code loads here
constexpr uint64_t kInitrdAlign = 2 * kMiB;

// --- the 32-bit MMIO gap: [kMmioGapStart, 4 GiB) is never RAM ---
constexpr uint64_t kMmioGapStart = 0xC0000000;
constexpr uint64_t kMmioGapEnd = 0x100000000;
constexpr uint64_t kRamAbove4g = 0x100000000;

// virtio-mmio devices: one 4 KiB window each, IRQ kVirtioIrqBase + index.
constexpr uint64_t kVirtioMmioBase = 0xD0000000;
constexpr uint64_t kVirtioMmioSize = 0x1000;
constexpr unsigned kVirtioMaxDevices = 8;
constexpr unsigned kVirtioIrqBase = 5;

constexpr uint64_t kIoapicAddr = 0xFEC00000;
constexpr uint64_t kLapicAddr = 0xFEE00000;

// --- legacy I/O ports ---
constexpr uint16_t kCom1Port = 0x3f8;
constexpr unsigned kCom1Irq = 4;
constexpr uint16_t kI8042DataPort = 0x60;
constexpr uint16_t kI8042CmdPort = 0x64;
// ACPI hardware-reduced sleep/reset registers (FADT SLEEP_CONTROL/SLEEP_STATUS/RESET_REG).
constexpr uint16_t kAcpiSleepControlPort = 0x600;
constexpr uint16_t kAcpiSleepStatusPort = 0x601;
constexpr uint16_t kAcpiResetPort = 0x602;
constexpr uint8_t kAcpiResetValue = 0x1;
constexpr uint8_t kAcpiS5SleepType = 5;       // \_S5 package value in the DSDT

}  // namespace minihv::layout
