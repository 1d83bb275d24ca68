// blockdev/mem_device.h — a device in memory for unit tests, with faults on demand: a torn write
// (only the first bytes land), failing I/O, and a count of writes.
#pragma once

#include <mutex>
#include <vector>

#include "blockdev/device.h"

namespace minihv::blockdev {

class MemDevice final : public Device {
public:
  explicit MemDevice(uint64_t bytes, std::string name = "mem");

  uint64_t size() const override { return data_.size(); }
  const std::string& name() const override { return name_; }
  Status read(uint64_t offset, std::span<uint8_t> buf) override;
  Status write(uint64_t offset, std::span<const uint8_t> buf) override;
  Status zero(uint64_t offset, uint64_t len) override;

  // The next write stores only its first `bytes` bytes and then reports an error.
  void tear_next_write(size_t bytes);
  // Every I/O fails while set (a path to the storage lost).
  void set_failing(bool failing);
  uint64_t writes() const;
  // Raw access for tests that damage or inspect records.
  uint8_t* raw(uint64_t offset) { return data_.data() + offset; }

private:
  Status check(uint64_t offset, size_t len) const;
  std::string name_;
  mutable std::mutex mu_;
  std::vector<uint8_t> data_;
  long tear_at_ = -1;
  bool failing_ = false;
  uint64_t writes_ = 0;
};

}  // namespace minihv::blockdev
