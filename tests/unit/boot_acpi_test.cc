#include "vmm/boot/acpi.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "vmm/boot/bytes.h"
#include "vmm/boot/dsdt.h"
#include "vmm/layout.h"

namespace minihv::boot {
namespace {

uint32_t u32_at(const std::vector<uint8_t>& b, size_t off) { return *read_le<uint32_t>(b, off); }
uint64_t u64_at(const std::vector<uint8_t>& b, size_t off) { return *read_le<uint64_t>(b, off); }
std::string sig(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.begin() + 4); }

bool contains(const std::vector<uint8_t>& hay, const std::vector<uint8_t>& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

void expect_valid_sdt(const std::vector<uint8_t>& t, const char* signature) {
  EXPECT_EQ(sig(t), signature);
  EXPECT_EQ(u32_at(t, 4), t.size());
  EXPECT_EQ(sum8(t), 0) << signature << " checksum";
}

FirmwareConfig two_devices(unsigned cpus) {
  return {cpus, {{layout::kVirtioMmioBase, layout::kVirtioMmioSize, layout::kVirtioIrqBase},
                 {layout::kVirtioMmioBase + layout::kVirtioMmioSize, layout::kVirtioMmioSize,
                  layout::kVirtioIrqBase + 1}}};
}

TEST(BootAcpi, RsdpV2BothChecksums) {
  const auto r = build_rsdp(0xE0200);
  ASSERT_EQ(r.size(), kRsdpSize);
  EXPECT_EQ(std::string(r.begin(), r.begin() + 8), "RSD PTR ");
  EXPECT_EQ(r[15], 2);  // revision
  EXPECT_EQ(u32_at(r, 20), kRsdpSize);
  EXPECT_EQ(u64_at(r, 24), 0xE0200u);
  EXPECT_EQ(sum8(std::span(r).first(20)), 0);
  EXPECT_EQ(sum8(r), 0);
}

TEST(BootAcpi, XsdtListsTables) {
  const uint64_t tables[] = {0xE0100, 0xE0300};
  const auto x = build_xsdt(tables);
  expect_valid_sdt(x, "XSDT");
  ASSERT_EQ(x.size(), kSdtHeaderSize + 16);
  EXPECT_EQ(u64_at(x, 36), 0xE0100u);
  EXPECT_EQ(u64_at(x, 44), 0xE0300u);
}

TEST(BootAcpi, FadtHardwareReducedWithSleepAndReset) {
  const auto f = build_fadt(0xE0040);
  expect_valid_sdt(f, "FACP");
  ASSERT_EQ(f.size(), kFadtSize);
  EXPECT_EQ(f[8], kFadtRevision);
  EXPECT_EQ(u32_at(f, 112), kFadtHwReducedAcpi | kFadtResetRegSup);
  EXPECT_EQ(u32_at(f, 76), 0u);  // no PM timer
  // RESET_REG: SystemIO, 8 bits, byte access, port; then RESET_VALUE.
  EXPECT_EQ(f[116], kGasSystemIo);
  EXPECT_EQ(f[117], 8);
  EXPECT_EQ(f[119], kGasAccessByte);
  EXPECT_EQ(u64_at(f, 120), layout::kAcpiResetPort);
  EXPECT_EQ(f[128], layout::kAcpiResetValue);
  EXPECT_EQ(u64_at(f, 140), 0xE0040u);  // X_DSDT
  EXPECT_EQ(f[244], kGasSystemIo);      // SLEEP_CONTROL_REG
  EXPECT_EQ(f[245], 8);
  EXPECT_EQ(u64_at(f, 248), layout::kAcpiSleepControlPort);
  EXPECT_EQ(f[256], kGasSystemIo);      // SLEEP_STATUS_REG
  EXPECT_EQ(u64_at(f, 260), layout::kAcpiSleepStatusPort);
}

TEST(BootAcpi, MadtOneLapicPerVcpu) {
  for (unsigned cpus : {1u, 4u}) {
    const auto m = build_madt(cpus);
    expect_valid_sdt(m, "APIC");
    EXPECT_EQ(u32_at(m, 36), layout::kLapicAddr);
    ASSERT_EQ(m.size(), 44 + 8 * cpus + 12 + 10 + 6);
    for (unsigned i = 0; i < cpus; ++i) {
      const size_t e = 44 + 8 * i;
      EXPECT_EQ(m[e], 0);      // Processor Local APIC
      EXPECT_EQ(m[e + 1], 8);
      EXPECT_EQ(m[e + 2], i);  // UID
      EXPECT_EQ(m[e + 3], i);  // APIC id
      EXPECT_EQ(u32_at(m, e + 4), 1u);  // enabled
    }
    const size_t io = 44 + 8 * cpus;
    EXPECT_EQ(m[io], 1);
    EXPECT_EQ(m[io + 2], ioapic_id(cpus));
    EXPECT_EQ(u32_at(m, io + 4), layout::kIoapicAddr);
    EXPECT_EQ(u32_at(m, io + 8), 0u);  // GSI base
    const size_t iso = io + 12;
    EXPECT_EQ(m[iso], 2);
    EXPECT_EQ(m[iso + 3], 0);            // ISA IRQ 0
    EXPECT_EQ(u32_at(m, iso + 4), 2u);   // → GSI 2
  }
}

TEST(BootAcpi, DsdtDescribesVirtioCom1AndS5) {
  auto d = build_dsdt(two_devices(1));
  ASSERT_TRUE(d) << d.message();
  expect_valid_sdt(*d, "DSDT");
  const std::vector<uint8_t> hid{'L', 'N', 'R', 'O', '0', '0', '0', '5', 0};
  EXPECT_TRUE(contains(*d, hid));
  EXPECT_TRUE(contains(*d, {0x5B, 0x82}));  // a Device
  EXPECT_TRUE(contains(*d, {'V', 'R', '0', '0'}));
  EXPECT_TRUE(contains(*d, {'V', 'R', '0', '1'}));
  // Memory32Fixed(ReadWrite, 0xD0001000, 0x1000) and Interrupt(Consumer, Edge, High, Excl) {6}.
  EXPECT_TRUE(contains(*d, {0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00}));
  EXPECT_TRUE(contains(*d, {0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00}));
  EXPECT_TRUE(contains(*d, {0x0C, 0x41, 0xD0, 0x05, 0x01}));  // EisaId("PNP0501")
  EXPECT_TRUE(contains(*d, {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, layout::kAcpiS5SleepType}));
}

TEST(BootAcpi, DsdtRejectsWindowAboveFourGiB) {
  FirmwareConfig cfg{1, {{0x100000000, 0x1000, 5}}};
  EXPECT_FALSE(build_dsdt(cfg));
}

TEST(BootAcpi, ValidateRejectsBadMachines) {
  EXPECT_FALSE(validate({0, {}}));
  EXPECT_FALSE(validate({kMaxCpus + 1, {}}));
  EXPECT_FALSE(validate({1, {{0x1000, 0x1000, 5}}}));                        // not in the gap
  EXPECT_FALSE(validate({1, {{layout::kVirtioMmioBase, 0x1000, 4}}}));       // COM1's IRQ
  EXPECT_FALSE(validate({1, {{layout::kVirtioMmioBase, 0x1000, 24}}}));      // beyond the IOAPIC
  FirmwareConfig dup = two_devices(1);
  dup.virtio_devices[1].irq = dup.virtio_devices[0].irq;
  EXPECT_FALSE(validate(dup));
  FirmwareConfig overlap = two_devices(1);
  overlap.virtio_devices[1].base = overlap.virtio_devices[0].base;
  EXPECT_FALSE(validate(overlap));
  EXPECT_TRUE(validate(two_devices(2)));
}

TEST(BootAcpi, BuildAcpiPlacesLinkedTablesInGuestMemory) {
  auto mem = GuestMemory::create(16 * layout::kMiB);
  ASSERT_TRUE(mem) << mem.message();
  auto rsdp_addr = build_acpi(**mem, two_devices(2));
  ASSERT_TRUE(rsdp_addr) << rsdp_addr.message();
  EXPECT_EQ(*rsdp_addr, layout::kAcpiStart);
  auto read = [&](uint64_t gpa, size_t len) {
    std::vector<uint8_t> b(len);
    EXPECT_TRUE((*mem)->read(gpa, b.data(), len).is_ok());
    return b;
  };
  auto table = [&](uint64_t gpa) {
    const auto hdr = read(gpa, kSdtHeaderSize);
    return read(gpa, u32_at(hdr, 4));
  };
  const auto rsdp = read(*rsdp_addr, kRsdpSize);
  EXPECT_EQ(sum8(rsdp), 0);
  const auto xsdt = table(u64_at(rsdp, 24));
  expect_valid_sdt(xsdt, "XSDT");
  ASSERT_EQ(xsdt.size(), kSdtHeaderSize + 16);
  const auto fadt = table(u64_at(xsdt, 36));
  expect_valid_sdt(fadt, "FACP");
  const auto madt = table(u64_at(xsdt, 44));
  expect_valid_sdt(madt, "APIC");
  const uint64_t dsdt_addr = u64_at(fadt, 140);
  const auto dsdt = table(dsdt_addr);
  expect_valid_sdt(dsdt, "DSDT");
  for (uint64_t a : {u64_at(rsdp, 24), u64_at(xsdt, 36), u64_at(xsdt, 44), dsdt_addr}) {
    EXPECT_GE(a, layout::kAcpiStart);
    EXPECT_LT(a, layout::kAcpiEnd);
  }
}

}  // namespace
}  // namespace minihv::boot
