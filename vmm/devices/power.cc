#include "vmm/devices/power.h"

#include <cstring>

#include "vmm/layout.h"

namespace minihv {

namespace {
constexpr uint8_t kSlpEn = 1 << 5;
constexpr uint8_t kSlpTypShift = 2, kSlpTypMask = 0x7;

// i8042 commands (port 0x64) and status bits.
constexpr uint8_t kCmdReadCtr = 0x20, kCmdWriteCtr = 0x60, kCmdSelfTest = 0xaa,
                  kCmdIfaceTest = 0xab, kCmdWriteAux = 0xd4, kCmdReset = 0xfe;
constexpr uint8_t kSelfTestOk = 0x55;
constexpr uint8_t kStatusObf = 0x01, kStatusSys = 0x04;
constexpr uint64_t kDataOffset = 0, kCmdOffset = 4;
}  // namespace

void AcpiPower::bus_read(uint64_t, uint8_t* data, uint32_t len) {
  std::memset(data, 0, len);  // SLEEP_STATUS: never asleep; control/reset read as 0
}

void AcpiPower::bus_write(uint64_t offset, const uint8_t* data, uint32_t) {
  const uint64_t port = layout::kAcpiSleepControlPort + offset;
  if (port == layout::kAcpiSleepControlPort && (data[0] & kSlpEn) &&
      ((data[0] >> kSlpTypShift) & kSlpTypMask) == layout::kAcpiS5SleepType) {
    on_event_(PowerEvent::kPowerOff);
  } else if (port == layout::kAcpiResetPort && data[0] == layout::kAcpiResetValue) {
    on_event_(PowerEvent::kReboot);
  }
}

void I8042::bus_read(uint64_t offset, uint8_t* data, uint32_t len) {
  std::lock_guard lock(mu_);
  std::memset(data, 0, len);
  if (offset == kCmdOffset) {
    data[0] = static_cast<uint8_t>(kStatusSys | (out_.empty() ? 0 : kStatusObf));
  } else if (offset == kDataOffset && !out_.empty()) {
    data[0] = out_.front();
    out_.pop_front();
  }
}

void I8042::bus_write(uint64_t offset, const uint8_t* data, uint32_t) {
  bool reset = false;
  {
    std::lock_guard lock(mu_);
    const uint8_t v = data[0];
    if (offset == kDataOffset) {
      if (pending_cmd_ == kCmdWriteCtr) ctr_ = v;
      pending_cmd_ = 0;  // bytes for the (absent) keyboard or aux port are dropped
    } else if (offset == kCmdOffset) {
      switch (v) {
        case kCmdReadCtr: out_.push_back(ctr_); break;
        case kCmdWriteCtr:
        case kCmdWriteAux: pending_cmd_ = v; break;
        case kCmdSelfTest: out_.push_back(kSelfTestOk); break;
        case kCmdIfaceTest: out_.push_back(0); break;
        case kCmdReset: reset = true; break;
        default: break;
      }
    }
  }
  if (reset) on_event_(PowerEvent::kReboot);
}

}  // namespace minihv
