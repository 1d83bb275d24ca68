#include "vmm/devices/virtio_blk_backend.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <bit>
#include <cstring>

#include "common/log.h"

namespace minihv {

namespace {

constexpr uint64_t kSector = 512;
// O_DIRECT on a file: 4 KiB satisfies every logical block size Linux supports for files we meet.
constexpr uint32_t kDirectAlignment = 4096;

Result<uint64_t> size_of(int fd, const std::string& path) {
  struct stat st {};
  if (fstat(fd, &st) < 0) return Status::from_errno("disk " + path + ": stat");
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
      return Status::from_errno("disk " + path + ": BLKGETSIZE64");
    return bytes;
  }
  return Status::error("disk " + path + ": not a regular file or block device");
}

}  // namespace

Result<BlockBackend> BlockBackend::open_file(const std::string& path, FileOptions opts) {
  const int extra = O_CLOEXEC | (opts.direct ? O_DIRECT : 0);
  bool read_only = opts.read_only;
  UniqueFd fd(::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | extra));
  if (!fd.valid() && !read_only && opts.allow_read_only_fallback &&
      (errno == EACCES || errno == EROFS || errno == EPERM)) {
    const int err = errno;
    fd.reset(::open(path.c_str(), O_RDONLY | extra));
    if (fd.valid()) {
      LOG_WARN("disk %s: cannot open for writing (%s); the guest gets it read-only", path.c_str(),
               std::strerror(err));
      read_only = true;
    }
  }
  if (!fd.valid())  // a path the user named: bad input, whatever the reason
    return Status::invalid_from_errno("disk " + path + ": cannot open " + (read_only ? "read-only" : "read-write"));
  auto size = size_of(fd.get(), path);
  if (!size) return size.status();
  if (*size % kSector)
    LOG_WARN("disk %s: size %llu is not a multiple of 512; the last %llu bytes are unused",
             path.c_str(), static_cast<unsigned long long>(*size),
             static_cast<unsigned long long>(*size % kSector));
  Extent e;
  e.fd = std::move(fd);
  e.length = *size / kSector * kSector;
  e.read_only = read_only;
  e.alignment = opts.direct ? kDirectAlignment : 1;
  e.name = path;
  return from_extent(std::move(e));
}

Result<BlockBackend> BlockBackend::from_extent(Extent e) {
  if (!e.fd.valid()) return Status::error("disk " + e.name + ": no file descriptor");
  if (e.length % kSector) return Status::error("disk " + e.name + ": length not a multiple of 512");
  if (e.alignment == 0 || !std::has_single_bit(e.alignment))
    return Status::error("disk " + e.name + ": alignment must be a power of two");
  if (e.alignment > 1 && (e.offset % e.alignment || e.length % e.alignment))
    return Status::error("disk " + e.name + ": extent not aligned to " +
                         std::to_string(e.alignment) + " bytes");
  if (e.offset > UINT64_MAX - e.length) return Status::error("disk " + e.name + ": extent wraps");
  BlockBackend b;
  b.fd_ = std::move(e.fd);
  b.offset_ = e.offset;
  b.length_ = e.length;
  b.read_only_ = e.read_only;
  b.alignment_ = e.alignment;
  b.name_ = std::move(e.name);
  return b;
}

uint32_t BlockBackend::block_size() const { return alignment_ > kSector ? alignment_ : kSector; }

std::optional<uint64_t> BlockBackend::file_offset(uint64_t sector, uint64_t bytes) const {
  if (sector > length_ / kSector) return std::nullopt;
  const uint64_t start = sector * kSector;  // cannot overflow: start <= length_
  if (bytes > length_ - start) return std::nullopt;
  return offset_ + start;
}

}  // namespace minihv
