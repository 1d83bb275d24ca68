// vmm/bus.h — port-I/O and MMIO dispatch from vCPU exits to devices.
//
// Owns: the address → device map. Devices register a range; a vCPU thread calls read()/write()
// with the exit's address. Accesses nobody claims read as all-ones and are dropped when written
// (what real hardware does), so a guest probing empty space never hurts the VMM.
// Devices are called from several vCPU threads at once and lock what they need themselves.
#pragma once

#include <cstdint>
#include <vector>

namespace minihv {

class BusDevice {
public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the start of the range the device registered; len is 1, 2, 4 or 8.
  virtual void bus_read(uint64_t offset, uint8_t* data, uint32_t len) = 0;
  virtual void bus_write(uint64_t offset, const uint8_t* data, uint32_t len) = 0;
};

class Bus {
public:
  // Returns false when [base, base+size) overlaps a range already registered.
  bool add(uint64_t base, uint64_t size, BusDevice* dev) {
    for (const Range& r : ranges_)
      if (base < r.base + r.size && r.base < base + size) return false;
    ranges_.push_back({base, size, dev});
    return true;
  }
  // True when a device took the access.
  bool read(uint64_t addr, uint8_t* data, uint32_t len) const {
    if (const Range* r = find(addr, len)) {
      r->dev->bus_read(addr - r->base, data, len);
      return true;
    }
    for (uint32_t i = 0; i < len; ++i) data[i] = 0xff;
    return false;
  }
  bool write(uint64_t addr, const uint8_t* data, uint32_t len) const {
    if (const Range* r = find(addr, len)) {
      r->dev->bus_write(addr - r->base, data, len);
      return true;
    }
    return false;
  }

private:
  struct Range {
    uint64_t base, size;
    BusDevice* dev;
  };
  const Range* find(uint64_t addr, uint32_t len) const {
    for (const Range& r : ranges_)
      if (addr >= r.base && addr - r.base < r.size && len <= r.size - (addr - r.base)) return &r;
    return nullptr;
  }
  std::vector<Range> ranges_;  // fixed before the first vCPU runs; read-only afterwards
};

}  // namespace minihv
