#include "vmm/boot/mptable.h"

#include <gtest/gtest.h>

#include <string>

#include "vmm/boot/bytes.h"
#include "vmm/layout.h"

namespace minihv::boot {
namespace {

constexpr uint64_t kBase = layout::kMptableStart;

struct Parsed {
  std::vector<uint8_t> floating, config;
};

Parsed split(const std::vector<uint8_t>& b) {
  return {std::vector<uint8_t>(b.begin(), b.begin() + kMpFloatingSize),
          std::vector<uint8_t>(b.begin() + kMpFloatingSize, b.end())};
}

FirmwareConfig machine(unsigned cpus) {
  return {cpus, {{layout::kVirtioMmioBase, layout::kVirtioMmioSize, layout::kVirtioIrqBase},
                 {layout::kVirtioMmioBase + 0x1000, layout::kVirtioMmioSize, 20}}};
}

void check(unsigned cpus) {
  const auto bytes = build_mptable_bytes(machine(cpus), kBase);
  const Parsed p = split(bytes);
  // Floating pointer.
  EXPECT_EQ(std::string(p.floating.begin(), p.floating.begin() + 4), "_MP_");
  EXPECT_EQ(*read_le<uint32_t>(p.floating, 4), kBase + kMpFloatingSize);
  EXPECT_EQ(p.floating[8], 1);  // 16 bytes
  EXPECT_EQ(p.floating[9], kMpSpecRev);
  EXPECT_EQ(sum8(p.floating), 0);
  // Configuration table header.
  EXPECT_EQ(std::string(p.config.begin(), p.config.begin() + 4), "PCMP");
  EXPECT_EQ(*read_le<uint16_t>(p.config, 4), p.config.size());
  EXPECT_EQ(sum8(p.config), 0);
  EXPECT_EQ(*read_le<uint32_t>(p.config, 36), layout::kLapicAddr);
  // Entries: processors, bus, IOAPIC, ExtINT + 15 ISA IRQs, 1 virtio IRQ above 15, 2 local.
  const uint16_t count = *read_le<uint16_t>(p.config, 34);
  EXPECT_EQ(count, cpus + 1 + 1 + 16 + 1 + 2);
  EXPECT_EQ(p.config.size(), kMpConfigHeaderSize + cpus * kMpProcessorEntrySize + (count - cpus) * kMpSmallEntrySize);
  size_t off = kMpConfigHeaderSize;
  for (unsigned i = 0; i < cpus; ++i, off += kMpProcessorEntrySize) {
    EXPECT_EQ(p.config[off], 0);
    EXPECT_EQ(p.config[off + 1], i);                   // APIC id
    EXPECT_EQ(p.config[off + 3], i == 0 ? 0x3 : 0x1);  // enabled, BSP on 0
  }
  EXPECT_EQ(p.config[off], 1);  // bus
  EXPECT_EQ(std::string(p.config.begin() + off + 2, p.config.begin() + off + 8), "ISA   ");
  off += 8;
  EXPECT_EQ(p.config[off], 2);  // IOAPIC
  EXPECT_EQ(p.config[off + 1], ioapic_id(cpus));
  EXPECT_EQ(*read_le<uint32_t>(p.config, off + 4), layout::kIoapicAddr);
  off += 8;
  EXPECT_EQ(p.config[off], 3);  // ExtINT on pin 0
  EXPECT_EQ(p.config[off + 1], 3);
  EXPECT_EQ(p.config[off + 7], 0);
  off += 8;
  EXPECT_EQ(p.config[off + 5], 0);  // ISA IRQ 0 ...
  EXPECT_EQ(p.config[off + 7], 2);  // ... on pin 2
  bool saw_virtio = false;
  for (size_t e = off; e < p.config.size(); e += 8)
    if (p.config[e] == 3 && p.config[e + 5] == 20 && p.config[e + 7] == 20) saw_virtio = true;
  EXPECT_TRUE(saw_virtio);
  const size_t last = p.config.size() - 8;
  EXPECT_EQ(p.config[last], 4);      // local: NMI on LINT1
  EXPECT_EQ(p.config[last + 1], 1);
  EXPECT_EQ(p.config[last + 7], 1);
  EXPECT_EQ(p.config[last - 8 + 1], 3);  // local: ExtINT on LINT0
}

TEST(BootMptable, OneVcpu) { check(1); }
TEST(BootMptable, FourVcpus) { check(4); }

TEST(BootMptable, WrittenAtItsAddress) {
  auto mem = GuestMemory::create(16 * layout::kMiB);
  ASSERT_TRUE(mem) << mem.message();
  ASSERT_TRUE(build_mptable(**mem, machine(2)).is_ok());
  char magic[4];
  ASSERT_TRUE((*mem)->read(layout::kMptableStart, magic, 4).is_ok());
  EXPECT_EQ(std::string(magic, 4), "_MP_");
}

}  // namespace
}  // namespace minihv::boot
