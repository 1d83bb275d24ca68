// vmm/boot/mptable.h — the Intel MultiProcessor Specification 1.4 tables.
//
// Owns: the MP floating pointer and configuration table at layout::kMptableStart: one processor
// entry per vCPU (the BSP is 0), the ISA bus, the IOAPIC, I/O interrupt entries for ISA IRQs 0–15
// (IRQ 0 on pin 2, as in the MADT) and for each virtio IRQ, and the LINT0 ExtINT / LINT1 NMI local
// entries. Kernels booted with acpi=off (and our test guest) find their CPUs here.
// Must not know: KVM, kernel formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status.h"
#include "vmm/boot/firmware_config.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr size_t kMpFloatingSize = 16;
constexpr size_t kMpConfigHeaderSize = 44;
constexpr size_t kMpProcessorEntrySize = 20;
constexpr size_t kMpSmallEntrySize = 8;   // bus, IOAPIC, I/O and local interrupt entries
constexpr uint8_t kMpSpecRev = 4;         // 1.4

// Floating pointer + configuration table, laid out for `base` (the config table follows the
// 16-byte floating pointer).
std::vector<uint8_t> build_mptable_bytes(const FirmwareConfig& cfg, uint64_t base);

Status build_mptable(GuestMemory& mem, const FirmwareConfig& cfg);

}  // namespace minihv::boot
