// blockdev/device.h — the shared device a volume lives on, behind an interface.
//
// Real: a file or block device opened O_DIRECT|O_DSYNC, reads through io_uring, writes by pwrite (file_device.h).
// Tests: memory, with torn writes and I/O errors on demand (mem_device.h).
// Every offset and length is a multiple of kBlockSize; a write has reached the device (and every
// other opener sees it) when it returns ok.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "common/status.h"

namespace minihv::blockdev {

// Metadata records, lease slots and extents are aligned to this (the largest logical block size
// Linux devices have, so O_DIRECT works on every device the volume may sit on).
constexpr uint32_t kBlockSize = 4096;

class Device {
public:
  virtual ~Device() = default;
  virtual uint64_t size() const = 0;
  virtual const std::string& name() const = 0;
  virtual Status read(uint64_t offset, std::span<uint8_t> buf) = 0;
  virtual Status write(uint64_t offset, std::span<const uint8_t> buf) = 0;
  // Makes [offset, offset+len) read as zeros (a new disk must not show a removed disk's data).
  virtual Status zero(uint64_t offset, uint64_t len) = 0;
};

// One 4 KiB-aligned block, the unit of every metadata I/O (O_DIRECT needs aligned buffers).
struct alignas(kBlockSize) Block {
  uint8_t bytes[kBlockSize] = {};
  std::span<uint8_t> span() { return {bytes, kBlockSize}; }
  std::span<const uint8_t> span() const { return {bytes, kBlockSize}; }
};

// A heap buffer of n blocks, aligned for O_DIRECT.
class AlignedBuffer {
public:
  explicit AlignedBuffer(size_t bytes)
      : p_(static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, round(bytes)))), n_(round(bytes)) {}
  uint8_t* data() const { return p_.get(); }
  size_t size() const { return n_; }
  std::span<uint8_t> span() const { return {p_.get(), n_}; }

private:
  static size_t round(size_t b) { return (b + kBlockSize - 1) / kBlockSize * kBlockSize; }
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> p_;
  size_t n_;
};

}  // namespace minihv::blockdev
