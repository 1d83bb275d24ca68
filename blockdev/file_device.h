// blockdev/file_device.h — the real shared device: a file or block device, O_DIRECT|O_DSYNC,
// reads through one io_uring, writes by pwrite(2) (why: file_device.cc).
//
// O_DIRECT: every opener (other processes, other hosts on a shared LUN) sees a write at once, with
// no page cache in between. O_DSYNC: a lease record or table entry is durable when write() returns.
// Calls from several threads are serialised (metadata I/O is a few records a second).
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>

#include "blockdev/device.h"
#include "common/fd.h"
#include "common/uring.h"

namespace minihv::blockdev {

class FileDevice final : public Device {
public:
  enum class Mode { kReadOnly, kReadWrite };
  // Opens an existing file or block device; its size is rounded down to whole blocks.
  static Result<std::unique_ptr<FileDevice>> open(const std::string& path, Mode mode);

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return path_; }
  Status read(uint64_t offset, std::span<uint8_t> buf) override;
  Status write(uint64_t offset, std::span<const uint8_t> buf) override;
  Status zero(uint64_t offset, uint64_t len) override;
  int fd() const { return fd_.get(); }
  // Test hook (cluster integration tests): each write is made by a child process that first
  // waits `delay`; write() returns once it has landed. Killing this process mid-write leaves the
  // write in flight, and it lands after the kill, as a write stuck in the kernel would.
  void make_writes_late(std::chrono::milliseconds delay) { late_ms_.store(delay.count()); }

private:
  FileDevice() = default;
  Status io(bool write, uint64_t offset, uint8_t* buf, size_t len);
  Status write_sync(uint64_t offset, const uint8_t* buf, size_t len);
  Status write_late(uint64_t offset, const uint8_t* buf, size_t len, int64_t late_ms);
  Status check(uint64_t offset, size_t len) const;

  std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool block_device_ = false;
  std::atomic<int64_t> late_ms_{0};
  std::mutex mu_;
  Uring ring_;
};

// The size of an open file or block device.
Result<uint64_t> device_size(int fd, const std::string& path);

}  // namespace minihv::blockdev
