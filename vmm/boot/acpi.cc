#include "vmm/boot/acpi.h"

#include "vmm/boot/bytes.h"
#include "vmm/boot/dsdt.h"
#include "vmm/layout.h"

namespace minihv::boot {

namespace {

constexpr std::string_view kOemId = "MINIHV";
constexpr std::string_view kOemTableId = "MINIHVVM";
constexpr uint32_t kOemRevision = 1;
constexpr std::string_view kCreatorId = "MHV ";
constexpr uint32_t kCreatorRevision = 1;
constexpr uint8_t kRsdpRevision = 2;        // ACPI 2.0+: has the XSDT address
constexpr size_t kSdtLengthOffset = 4;
constexpr size_t kSdtChecksumOffset = 9;
constexpr size_t kRsdpChecksumOffset = 8;
constexpr size_t kRsdpExtChecksumOffset = 32;
constexpr uint64_t kTableAlign = 16;

// MADT entry types and lengths (ACPI 6.x 5.2.12).
constexpr uint8_t kMadtLapic = 0, kMadtLapicLen = 8;
constexpr uint8_t kMadtIoapic = 1, kMadtIoapicLen = 12;
constexpr uint8_t kMadtIso = 2, kMadtIsoLen = 10;
constexpr uint8_t kMadtLapicNmi = 4, kMadtLapicNmiLen = 6;
constexpr uint8_t kAllProcessors = 0xFF;
constexpr uint8_t kLint1 = 1;
constexpr uint16_t kMpsIntiConforming = 0;  // polarity/trigger as the bus defines (ISA: edge, high)
constexpr uint8_t kIsaBus = 0;

// Generic Address Structure for a byte-wide I/O port.
void put_gas_io_port(ByteWriter& w, uint16_t port) {
  w.u8(kGasSystemIo).u8(8).u8(0).u8(kGasAccessByte).u64(port);
}
void put_gas_none(ByteWriter& w) { w.zeros(12); }

}  // namespace

std::vector<uint8_t> sdt_header(std::string_view signature, uint8_t revision) {
  ByteWriter w;
  w.fixed_str(signature, 4).u32(0).u8(revision).u8(0);
  w.fixed_str(kOemId, 6).fixed_str(kOemTableId, 8).u32(kOemRevision);
  w.fixed_str(kCreatorId, 4).u32(kCreatorRevision);
  return std::move(w).take();
}

void finish_sdt(std::vector<uint8_t>& t) {
  const auto len = static_cast<uint32_t>(t.size());
  for (int i = 0; i < 4; ++i) t[kSdtLengthOffset + i] = static_cast<uint8_t>(len >> (8 * i));
  t[kSdtChecksumOffset] = 0;
  t[kSdtChecksumOffset] = checksum_byte(t);
}

std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr) {
  ByteWriter w;
  w.fixed_str("RSD PTR ", 8).u8(0).fixed_str(kOemId, 6).u8(kRsdpRevision);
  w.u32(0);  // no RSDT: revision-2 readers take the XSDT
  w.u32(kRsdpSize).u64(xsdt_addr).u8(0).zeros(3);
  std::vector<uint8_t> r = std::move(w).take();
  r[kRsdpChecksumOffset] = checksum_byte(std::span(r).first(kRsdpV1ChecksumLen));
  r[kRsdpExtChecksumOffset] = checksum_byte(r);
  return r;
}

std::vector<uint8_t> build_xsdt(std::span<const uint64_t> tables) {
  ByteWriter w;
  w.append(sdt_header("XSDT", kXsdtRevision));
  for (uint64_t t : tables) w.u64(t);
  std::vector<uint8_t> x = std::move(w).take();
  finish_sdt(x);
  return x;
}

std::vector<uint8_t> build_fadt(uint64_t dsdt_addr) {
  ByteWriter w;
  w.append(sdt_header("FACP", kFadtRevision));
  w.u32(0);            // FIRMWARE_CTRL: no FACS (hardware-reduced)
  w.u32(0);            // DSDT: X_DSDT is used instead
  w.u8(0).u8(0);       // reserved, preferred PM profile: unspecified
  w.u16(0);            // SCI_INT: none
  w.u32(0).u8(0).u8(0).u8(0).u8(0);  // SMI_CMD, ACPI_ENABLE/DISABLE, S4BIOS_REQ, PSTATE_CNT
  w.zeros(8 * 4);      // PM1a/b_EVT, PM1a/b_CNT, PM2_CNT, PM_TMR, GPE0, GPE1 blocks: none
  w.zeros(8);          // their lengths, GPE1_BASE, CST_CNT
  w.u16(0).u16(0).u16(0).u16(0);     // P_LVL2/3_LAT, FLUSH_SIZE/STRIDE
  w.u8(0).u8(0).u8(0).u8(0).u8(0);   // DUTY_OFFSET/WIDTH, DAY/MON_ALRM, CENTURY
  w.u16(kIapc8042 | kIapcVgaNotPresent | kIapcMsiNotSupported);  // IAPC_BOOT_ARCH
  w.u8(0);             // reserved
  w.u32(kFadtHwReducedAcpi | kFadtResetRegSup);
  put_gas_io_port(w, layout::kAcpiResetPort);  // RESET_REG
  w.u8(layout::kAcpiResetValue);
  w.u16(0);            // ARM_BOOT_ARCH
  w.u8(0);             // FADT minor version
  w.u64(0);            // X_FIRMWARE_CTRL
  w.u64(dsdt_addr);    // X_DSDT
  for (int i = 0; i < 8; ++i) put_gas_none(w);  // X_PM1a_EVT .. X_GPE1: none
  put_gas_io_port(w, layout::kAcpiSleepControlPort);  // SLEEP_CONTROL_REG
  put_gas_io_port(w, layout::kAcpiSleepStatusPort);   // SLEEP_STATUS_REG
  w.fixed_str("MINIHV", 8, '\0');                     // hypervisor vendor identity
  std::vector<uint8_t> f = std::move(w).take();
  finish_sdt(f);
  return f;
}

std::vector<uint8_t> build_madt(unsigned num_cpus) {
  ByteWriter w;
  w.append(sdt_header("APIC", kMadtRevision));
  w.u32(static_cast<uint32_t>(layout::kLapicAddr)).u32(kMadtPcatCompat);
  for (unsigned i = 0; i < num_cpus; ++i) {
    const auto id = static_cast<uint8_t>(i);  // ACPI processor UID = APIC id = KVM vCPU id
    w.u8(kMadtLapic).u8(kMadtLapicLen).u8(id).u8(id).u32(kMadtLapicEnabled);
  }
  w.u8(kMadtIoapic).u8(kMadtIoapicLen).u8(ioapic_id(num_cpus)).u8(0);
  w.u32(static_cast<uint32_t>(layout::kIoapicAddr)).u32(0);  // GSI base 0
  w.u8(kMadtIso).u8(kMadtIsoLen).u8(kIsaBus).u8(kIsaTimerIrq).u32(kIsaTimerGsi).u16(kMpsIntiConforming);
  w.u8(kMadtLapicNmi).u8(kMadtLapicNmiLen).u8(kAllProcessors).u16(kMpsIntiConforming).u8(kLint1);
  std::vector<uint8_t> m = std::move(w).take();
  finish_sdt(m);
  return m;
}

Result<uint64_t> build_acpi(GuestMemory& mem, const FirmwareConfig& cfg) {
  MINIHV_TRY(validate(cfg));
  auto dsdt = build_dsdt(cfg);
  if (!dsdt) return dsdt.status();
  uint64_t next = layout::kAcpiStart;
  auto place = [&](const std::vector<uint8_t>& t) -> Result<uint64_t> {
    const uint64_t at = next;
    if (t.size() > layout::kAcpiEnd - at) return Status::error("ACPI tables overflow their area");
    MINIHV_TRY(mem.write(at, t.data(), t.size()));
    next = (at + t.size() + kTableAlign - 1) & ~(kTableAlign - 1);
    return at;
  };
  // The RSDP goes first, on a 16-byte boundary of the BIOS area a guest also scans; the XSDT it
  // points at follows every other table, so its address is known only at the end: reserve a slot.
  const uint64_t rsdp_addr = next;
  next += (kRsdpSize + kTableAlign - 1) & ~(kTableAlign - 1);
  auto dsdt_addr = place(*dsdt);
  if (!dsdt_addr) return dsdt_addr.status().context("writing the DSDT");
  auto fadt_addr = place(build_fadt(*dsdt_addr));
  if (!fadt_addr) return fadt_addr.status().context("writing the FADT");
  auto madt_addr = place(build_madt(cfg.num_cpus));
  if (!madt_addr) return madt_addr.status().context("writing the MADT");
  const uint64_t tables[] = {*fadt_addr, *madt_addr};
  auto xsdt_addr = place(build_xsdt(tables));
  if (!xsdt_addr) return xsdt_addr.status().context("writing the XSDT");
  const std::vector<uint8_t> rsdp = build_rsdp(*xsdt_addr);
  MINIHV_TRY(mem.write(rsdp_addr, rsdp.data(), rsdp.size()).context("writing the RSDP"));
  return rsdp_addr;
}

}  // namespace minihv::boot
