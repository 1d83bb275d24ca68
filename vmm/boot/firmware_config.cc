#include "vmm/boot/firmware_config.h"

#include <string>

#include "vmm/layout.h"

namespace minihv::boot {

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// IRQs the legacy devices own: timer, keyboard, cascade, COM1.
bool is_reserved_irq(uint32_t irq) {
  return irq == kIsaTimerIrq || irq == 1 || irq == kIsaTimerGsi || irq == layout::kCom1Irq;
}

}  // namespace

Status validate(const FirmwareConfig& cfg) {
  if (cfg.num_cpus == 0 || cfg.num_cpus > kMaxCpus)
    return Status::error("vCPU count " + std::to_string(cfg.num_cpus) + " is outside 1.." +
                         std::to_string(kMaxCpus));
  const auto& devs = cfg.virtio_devices;
  for (size_t i = 0; i < devs.size(); ++i) {
    const VirtioMmioWindow& d = devs[i];
    const std::string what = "virtio-mmio window " + std::to_string(i) + " at " + hex(d.base);
    if (d.size == 0 || d.size % layout::kPageSize || d.base % layout::kPageSize)
      return Status::error(what + ": base and size must be non-zero multiples of 4 KiB");
    if (d.base < layout::kMmioGapStart || d.base + d.size > layout::kIoapicAddr ||
        d.base + d.size < d.base)
      return Status::error(what + ": must lie in the MMIO gap below the IOAPIC (" +
                           hex(layout::kMmioGapStart) + ".." + hex(layout::kIoapicAddr) + ")");
    if (d.irq >= kIoapicPins || is_reserved_irq(d.irq))
      return Status::error(what + ": IRQ " + std::to_string(d.irq) +
                           " is taken by a legacy device or beyond the IOAPIC's pins");
    for (size_t j = 0; j < i; ++j) {
      if (devs[j].irq == d.irq)
        return Status::error(what + ": IRQ " + std::to_string(d.irq) + " is already used by window " +
                             std::to_string(j));
      if (d.base < devs[j].base + devs[j].size && devs[j].base < d.base + d.size)
        return Status::error(what + ": overlaps window " + std::to_string(j));
    }
  }
  return Status::ok();
}

}  // namespace minihv::boot
