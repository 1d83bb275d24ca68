#include "vmm/boot/mptable.h"

#include "vmm/boot/bytes.h"
#include "vmm/layout.h"

namespace minihv::boot {

namespace {

constexpr uint8_t kEntryProcessor = 0, kEntryBus = 1, kEntryIoapic = 2, kEntryIoInt = 3, kEntryLocalInt = 4;
constexpr uint8_t kCpuEnabled = 1 << 0, kCpuBootProcessor = 1 << 1;
constexpr uint32_t kCpuSignature = 0x600;              // family 6: what the guest sees in CPUID anyway
constexpr uint32_t kCpuFeatureFpu = 1u << 0, kCpuFeatureApic = 1u << 9;
constexpr uint8_t kIoapicEnabled = 1 << 0;
constexpr uint8_t kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3;
constexpr uint16_t kIntFlagsConforming = 0;            // ISA: edge-triggered, active-high
constexpr uint16_t kIntFlagsEdgeHigh = 0x1 | (0x1 << 2);  // explicit for the virtio IRQs
constexpr uint8_t kIsaBusId = 0;
constexpr uint8_t kAllLapics = 0xFF;
constexpr size_t kConfigLengthOffset = 4, kConfigChecksumOffset = 7, kConfigCountOffset = 34;
constexpr size_t kFloatingChecksumOffset = 10;

// The configuration table's entries, counted as they are appended.
struct Entries {
  ByteWriter w;
  uint16_t count = 0;
  void processor(uint8_t apic_id, bool bsp) {
    w.u8(kEntryProcessor).u8(apic_id).u8(kLapicVersion).u8(kCpuEnabled | (bsp ? kCpuBootProcessor : 0));
    w.u32(kCpuSignature).u32(kCpuFeatureFpu | kCpuFeatureApic).zeros(8);
    ++count;
  }
  void isa_bus() { w.u8(kEntryBus).u8(kIsaBusId).fixed_str("ISA", 6); ++count; }
  void ioapic(uint8_t id) {
    w.u8(kEntryIoapic).u8(id).u8(kIoapicVersion).u8(kIoapicEnabled).u32(static_cast<uint32_t>(layout::kIoapicAddr));
    ++count;
  }
  void io_int(uint8_t type, uint16_t flags, uint8_t src_irq, uint8_t ioapic, uint8_t pin) {
    w.u8(kEntryIoInt).u8(type).u16(flags).u8(kIsaBusId).u8(src_irq).u8(ioapic).u8(pin);
    ++count;
  }
  void local_int(uint8_t type, uint8_t lint) {
    w.u8(kEntryLocalInt).u8(type).u16(kIntFlagsConforming).u8(kIsaBusId).u8(0).u8(kAllLapics).u8(lint);
    ++count;
  }
};

}  // namespace

std::vector<uint8_t> build_mptable_bytes(const FirmwareConfig& cfg, uint64_t base) {
  const uint8_t ioapic = ioapic_id(cfg.num_cpus);
  ByteWriter t;  // configuration table
  t.fixed_str("PCMP", 4).u16(0).u8(kMpSpecRev).u8(0);
  t.fixed_str("MINIHV", 8).fixed_str("KVM VM", 12);
  t.u32(0).u16(0).u16(0);  // no OEM table; entry count patched below
  t.u32(static_cast<uint32_t>(layout::kLapicAddr)).u16(0).u8(0).u8(0);  // no extended table
  Entries e;
  for (unsigned i = 0; i < cfg.num_cpus; ++i) e.processor(static_cast<uint8_t>(i), i == 0);
  e.isa_bus();
  e.ioapic(ioapic);
  // Pin 0 carries the 8259's output (ExtINT); ISA IRQ 0 is wired to pin 2 (the MADT says the same
  // with an interrupt source override); every other ISA IRQ n is pin n.
  e.io_int(kIntTypeExtInt, kIntFlagsConforming, 0, ioapic, 0);
  for (uint8_t irq = 0; irq < kIsaIrqs; ++irq) {
    if (irq == kIsaTimerGsi) continue;  // pin 2 belongs to IRQ 0
    e.io_int(kIntTypeInt, kIntFlagsConforming, irq, ioapic, irq == kIsaTimerIrq ? kIsaTimerGsi : irq);
  }
  for (const VirtioMmioWindow& d : cfg.virtio_devices) {
    if (d.irq < kIsaIrqs) continue;  // already listed as an ISA IRQ
    const auto irq = static_cast<uint8_t>(d.irq);
    e.io_int(kIntTypeInt, kIntFlagsEdgeHigh, irq, ioapic, irq);
  }
  e.local_int(kIntTypeExtInt, 0);
  e.local_int(kIntTypeNmi, 1);
  t.append(e.w.bytes());
  const uint16_t count = e.count;
  t.patch_u16(kConfigLengthOffset, static_cast<uint16_t>(t.size()));
  t.patch_u16(kConfigCountOffset, count);
  t.patch_u8(kConfigChecksumOffset, checksum_byte(t.bytes()));

  ByteWriter f;  // floating pointer: "_MP_", config address, length in 16-byte units, revision
  f.fixed_str("_MP_", 4).u32(static_cast<uint32_t>(base + kMpFloatingSize)).u8(1).u8(kMpSpecRev);
  f.u8(0).zeros(5);  // checksum; feature bytes: 0 = a configuration table is present, no IMCR
  f.patch_u8(kFloatingChecksumOffset, checksum_byte(f.bytes()));
  f.append(t.bytes());
  return std::move(f).take();
}

Status build_mptable(GuestMemory& mem, const FirmwareConfig& cfg) {
  MINIHV_TRY(validate(cfg));
  const std::vector<uint8_t> bytes = build_mptable_bytes(cfg, layout::kMptableStart);
  if (bytes.size() > layout::kBiosEnd - layout::kMptableStart)
    return Status::error("MP table does not fit below 1 MiB");
  return mem.write(layout::kMptableStart, bytes.data(), bytes.size()).context("writing the MP table");
}

}  // namespace minihv::boot
