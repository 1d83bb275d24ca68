// vmm/boot/acpi.h — the ACPI tables: RSDP, XSDT, FADT, MADT and the DSDT (dsdt.h).
//
// Owns: building each table's bytes (pure functions, tested byte by byte) and placing them in
// [layout::kAcpiStart, layout::kAcpiEnd). Debian's kernels find virtio-mmio devices only through
// the DSDT, and their vCPUs only through the MADT; the FADT says "hardware-reduced ACPI" so the
// guest expects no PM timer, no SCI and no legacy PM blocks, only the sleep/reset registers.
// Must not know: KVM, kernel formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "vmm/boot/firmware_config.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr size_t kSdtHeaderSize = 36;
constexpr size_t kRsdpSize = 36;
constexpr size_t kRsdpV1ChecksumLen = 20;
constexpr size_t kFadtSize = 276;           // ACPI 6.x FADT, revision 6
constexpr uint8_t kFadtRevision = 6;
constexpr uint8_t kMadtRevision = 5;
constexpr uint8_t kXsdtRevision = 1;
constexpr uint8_t kDsdtRevision = 2;        // 64-bit AML integers
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
constexpr uint32_t kFadtResetRegSup = 1u << 10;
constexpr uint16_t kIapc8042 = 1u << 1;     // an i8042 is present (our reset device)
constexpr uint16_t kIapcVgaNotPresent = 1u << 2;
constexpr uint16_t kIapcMsiNotSupported = 1u << 3;
constexpr uint32_t kMadtPcatCompat = 1u << 0;
constexpr uint32_t kMadtLapicEnabled = 1u << 0;
constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasAccessByte = 1;

// The 36-byte SDT header with the checksum left 0; finish_sdt() fills length and checksum.
std::vector<uint8_t> sdt_header(std::string_view signature, uint8_t revision);
void finish_sdt(std::vector<uint8_t>& table);

std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr);
std::vector<uint8_t> build_xsdt(std::span<const uint64_t> tables);
std::vector<uint8_t> build_fadt(uint64_t dsdt_addr);
std::vector<uint8_t> build_madt(unsigned num_cpus);

// Builds every table, writes them into guest memory and returns the RSDP's address.
Result<uint64_t> build_acpi(GuestMemory& mem, const FirmwareConfig& cfg);

}  // namespace minihv::boot
