// vmm/boot/dsdt.h — the DSDT: the devices a guest cannot discover by probing.
//
// Owns: the AML definition block: \_SB.COM1 (PNP0501, I/O 0x3f8, IRQ 4), one \_SB.VRnn
// (LNRO0005, Linux's virtio_mmio ACPI id) per virtio-mmio window with its MMIO range and an
// edge-triggered interrupt, and \_S5 so the guest can power off through SLEEP_CONTROL_REG.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "vmm/boot/firmware_config.h"

namespace minihv::boot {

constexpr const char* kVirtioMmioHid = "LNRO0005";
constexpr const char* kCom1Hid = "PNP0501";

Result<std::vector<uint8_t>> build_dsdt(const FirmwareConfig& cfg);

}  // namespace minihv::boot
