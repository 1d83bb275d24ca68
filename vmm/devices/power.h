// vmm/devices/power.h — how a guest ends its VM: ACPI sleep/reset registers and the i8042 reset.
//
// Owns: the hardware-reduced ACPI SLEEP_CONTROL / SLEEP_STATUS / RESET registers the FADT points
// at (layout::kAcpiSleepControlPort..), and a minimal i8042 controller whose 0xFE command resets
// the machine (what Linux's `reboot` falls back to). Must not know: what ending means to the VM.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "vmm/bus.h"

namespace minihv {

enum class PowerEvent { kPowerOff, kReboot };
using PowerHandler = std::function<void(PowerEvent)>;

class AcpiPower : public BusDevice {
public:
  explicit AcpiPower(PowerHandler on_event) : on_event_(std::move(on_event)) {}
  void bus_read(uint64_t offset, uint8_t* data, uint32_t len) override;
  void bus_write(uint64_t offset, const uint8_t* data, uint32_t len) override;

private:
  PowerHandler on_event_;
};

class I8042 : public BusDevice {
public:
  // Registered over ports 0x60..0x64; offsets 0 (data) and 4 (command/status) matter.
  explicit I8042(PowerHandler on_event) : on_event_(std::move(on_event)) {}
  void bus_read(uint64_t offset, uint8_t* data, uint32_t len) override;
  void bus_write(uint64_t offset, const uint8_t* data, uint32_t len) override;

private:
  PowerHandler on_event_;
  std::mutex mu_;
  std::deque<uint8_t> out_;   // bytes waiting in the output buffer
  uint8_t ctr_ = 0x61;        // controller configuration byte: kbd irq on, translation on
  uint8_t pending_cmd_ = 0;   // a command that takes a data byte next
};

}  // namespace minihv
