// vmm/boot/firmware_config.h — what the firmware tables describe: vCPUs and virtio-mmio windows.
//
// Owns: the machine description shared by the ACPI tables (acpi.h), the MP table (mptable.h) and
// the loader, its validation, and the interrupt wiring every table must agree on.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace minihv::boot {

struct VirtioMmioWindow {
  uint64_t base = 0;  // guest-physical, inside the MMIO gap
  uint64_t size = 0;
  uint32_t irq = 0;   // IOAPIC pin / GSI, edge-triggered active-high (irqfd semantics)
};

struct FirmwareConfig {
  unsigned num_cpus = 1;
  std::vector<VirtioMmioWindow> virtio_devices;
};

// xAPIC ids are 8 bits and 0xFF is broadcast; the IOAPIC takes the id after the last vCPU.
constexpr unsigned kMaxCpus = 254;
constexpr unsigned kIoapicPins = 24;   // KVM's in-kernel IOAPIC
constexpr unsigned kIsaIrqs = 16;
constexpr uint8_t kIsaTimerIrq = 0;
constexpr uint8_t kIsaTimerGsi = 2;    // ISA IRQ 0 (PIT) arrives on IOAPIC pin 2, as on every PC
constexpr uint8_t kLapicVersion = 0x14;
constexpr uint8_t kIoapicVersion = 0x11;

constexpr uint8_t ioapic_id(unsigned num_cpus) { return static_cast<uint8_t>(num_cpus); }

// Checks vCPU count, and that each window is page-sized, inside the MMIO gap, below the IOAPIC,
// not overlapping another, with a unique IRQ that is neither ISA-reserved nor beyond the IOAPIC.
Status validate(const FirmwareConfig& cfg);

}  // namespace minihv::boot
