// vmm/devices/virtio_blk_backend.h — where a virtio-blk disk's bytes live: an extent of a file.
//
// Owns: opening a raw image (`--disk PATH`) or taking an (fd, offset, length) extent of a volume
// opened elsewhere (the shared volume, O_DIRECT), the disk's capacity, its alignment needs, and the
// one bounds check that turns a disk sector into a file offset.
// Must not know: virtqueues, io_uring, guests.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

class BlockBackend {
public:
  struct FileOptions {
    bool read_only = false;                 // open O_RDONLY and offer VIRTIO_BLK_F_RO
    bool allow_read_only_fallback = false;  // if O_RDWR is refused, open read-only with a warning
    bool direct = false;                    // O_DIRECT (page cache bypass)
  };
  // A whole raw image file (or block device): capacity = size / 512.
  static Result<BlockBackend> open_file(const std::string& path, FileOptions opts);

  struct Extent {
    UniqueFd fd;
    uint64_t offset = 0;     // where the disk starts in the file
    uint64_t length = 0;     // bytes; a multiple of 512
    bool read_only = false;
    uint32_t alignment = 1;  // buffer/offset/length alignment the fd needs (O_DIRECT: 512/4096)
    std::string name;        // for messages and the default serial
  };
  // Part of a volume that someone else opened, e.g. a virtual disk of the shared volume.
  static Result<BlockBackend> from_extent(Extent extent);

  int fd() const { return fd_.get(); }
  bool read_only() const { return read_only_; }
  // Buffers, offsets and lengths of one I/O must be multiples of this; guest buffers that are not
  // get an aligned bounce buffer. 1 for ordinary buffered files.
  uint32_t alignment() const { return alignment_; }
  // The guest-visible logical block size: 512, or the alignment when that is larger.
  uint32_t block_size() const;
  uint64_t capacity_sectors() const { return length_ / 512; }
  const std::string& name() const { return name_; }
  // Asked before every write submission; false fails the write (IOERR). Unset: always true.
  // A volume disk sets its lease's check here (blockdev/disk_attach.h).
  void set_write_gate(std::function<bool()> gate) { may_write_ = std::move(gate); }
  bool may_write() const { return !may_write_ || may_write_(); }
  // A cluster VM's volume disk (blockdev/write_deadlines.h): `deadline` says by when a write handed
  // to the kernel now must be done (the node's fence); `publish` is told the earliest deadline of
  // the writes in the kernel (0: none) before any reaches it and after each completes.
  struct DeadlineWatch {
    std::function<int64_t()> deadline;
    std::function<void(int64_t)> publish;
    // Test hook (MINIHV_TEST_DISK_STALL, cli/run.cc): once, the disk thread waits this long between
    // publishing a write's deadline and handing the write to the kernel, as a stalled io-wq would.
    std::chrono::milliseconds stall_once{0};
  };
  void set_deadline_watch(DeadlineWatch w) { deadline_watch_ = std::move(w); }
  const DeadlineWatch& deadline_watch() const { return deadline_watch_; }

  // The file offset of [sector*512, sector*512 + bytes) of the disk, or nullopt when any byte of
  // it lies outside the extent (overflow-safe). Every I/O offset comes from here.
  std::optional<uint64_t> file_offset(uint64_t sector, uint64_t bytes) const;

private:
  BlockBackend() = default;
  UniqueFd fd_;
  uint64_t offset_ = 0, length_ = 0;
  bool read_only_ = false;
  uint32_t alignment_ = 1;
  std::string name_;
  std::function<bool()> may_write_;
  DeadlineWatch deadline_watch_;
};

}  // namespace minihv
