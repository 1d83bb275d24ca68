#include "blockdev/mem_device.h"

#include <cstring>

namespace minihv::blockdev {

MemDevice::MemDevice(uint64_t bytes, std::string name)
    : name_(std::move(name)), data_(bytes / kBlockSize * kBlockSize) {}

Status MemDevice::check(uint64_t offset, size_t len) const {
  if (offset % kBlockSize || len % kBlockSize) return Status::error(name_ + ": unaligned I/O");
  if (offset > data_.size() || len > data_.size() - offset) return Status::error(name_ + ": I/O past the end");
  if (failing_) return Status::error(name_ + ": I/O error (injected)");
  return Status::ok();
}

Status MemDevice::read(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard lock(mu_);
  MINIHV_TRY(check(offset, buf.size()));
  std::memcpy(buf.data(), data_.data() + offset, buf.size());
  return Status::ok();
}

Status MemDevice::write(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard lock(mu_);
  MINIHV_TRY(check(offset, buf.size()));
  ++writes_;
  if (tear_at_ >= 0) {
    const size_t n = std::min(buf.size(), static_cast<size_t>(tear_at_));
    std::memcpy(data_.data() + offset, buf.data(), n);
    tear_at_ = -1;
    return Status::error(name_ + ": torn write (injected)");
  }
  std::memcpy(data_.data() + offset, buf.data(), buf.size());
  return Status::ok();
}

Status MemDevice::zero(uint64_t offset, uint64_t len) {
  std::lock_guard lock(mu_);
  MINIHV_TRY(check(offset, len));
  std::memset(data_.data() + offset, 0, len);
  return Status::ok();
}

void MemDevice::tear_next_write(size_t bytes) {
  std::lock_guard lock(mu_);
  tear_at_ = static_cast<long>(bytes);
}

void MemDevice::set_failing(bool failing) {
  std::lock_guard lock(mu_);
  failing_ = failing;
}

uint64_t MemDevice::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

}  // namespace minihv::blockdev
