#include "vmm/boot/dsdt.h"

#include <cstdio>

#include "vmm/boot/acpi.h"
#include "vmm/boot/aml.h"
#include "vmm/layout.h"

namespace minihv::boot {

namespace {

constexpr uint8_t kCom1PortCount = 8;
constexpr unsigned kMaxVirtioNames = 256;  // VR00..VRFF
constexpr uint32_t kFourGiB = 0xFFFFFFFF;

aml::Bytes com1_device() {
  aml::ResourceTemplate crs;
  crs.io(layout::kCom1Port, 1, kCom1PortCount).irq_no_flags(static_cast<uint8_t>(layout::kCom1Irq));
  return aml::device("COM1", aml::concat({
                                 aml::name("_HID", aml::eisa_id(kCom1Hid)),
                                 aml::name("_UID", aml::integer(1)),
                                 aml::name("_CRS", crs.build()),
                             }));
}

// Linux's virtio_mmio binds LNRO0005 (drivers/virtio/virtio_mmio.c, acpi_device_id table); the
// interrupt is edge-triggered because the VMM signals it through an irqfd (assert + deassert).
aml::Bytes virtio_device(unsigned index, const VirtioMmioWindow& w) {
  char dev_name[5];
  snprintf(dev_name, sizeof dev_name, "VR%02X", index);
  aml::ResourceTemplate crs;
  crs.memory32_fixed(true, static_cast<uint32_t>(w.base), static_cast<uint32_t>(w.size))
      .interrupt(aml::Trigger::kEdge, aml::Polarity::kActiveHigh, w.irq);
  return aml::device(dev_name, aml::concat({
                                   aml::name("_HID", aml::string(kVirtioMmioHid)),
                                   aml::name("_UID", aml::integer(index)),
                                   aml::name("_CCA", aml::integer(1)),  // cache-coherent DMA
                                   aml::name("_CRS", crs.build()),
                               }));
}

}  // namespace

Result<std::vector<uint8_t>> build_dsdt(const FirmwareConfig& cfg) {
  if (cfg.virtio_devices.size() > kMaxVirtioNames)
    return Status::error("too many virtio-mmio devices for the DSDT");
  aml::Bytes sb = com1_device();
  for (unsigned i = 0; i < cfg.virtio_devices.size(); ++i) {
    const VirtioMmioWindow& w = cfg.virtio_devices[i];
    if (w.base > kFourGiB || w.size > kFourGiB - w.base)
      return Status::error("virtio-mmio window above 4 GiB cannot be described by Memory32Fixed");
    const aml::Bytes dev = virtio_device(i, w);
    sb.insert(sb.end(), dev.begin(), dev.end());
  }
  // \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved. The guest writes SLP_TYPa << 2 | SLP_EN to
  // SLEEP_CONTROL_REG to power off.
  const aml::Bytes s5 = aml::name("\\_S5", aml::package({aml::integer(layout::kAcpiS5SleepType),
                                                         aml::integer(0), aml::integer(0), aml::integer(0)}));
  std::vector<uint8_t> t = sdt_header("DSDT", kDsdtRevision);
  const aml::Bytes body = aml::concat({aml::scope("\\_SB", sb), s5});
  t.insert(t.end(), body.begin(), body.end());
  finish_sdt(t);
  return t;
}

}  // namespace minihv::boot
