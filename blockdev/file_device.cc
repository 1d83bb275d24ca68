#include "blockdev/file_device.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

namespace minihv::blockdev {

namespace {
constexpr unsigned kRingEntries = 8;  // one I/O at a time; a few spare
}  // namespace

Result<uint64_t> device_size(int fd, const std::string& path) {
  struct stat st {};
  if (fstat(fd, &st) < 0) return Status::from_errno(path + ": stat");
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) return Status::from_errno(path + ": BLKGETSIZE64");
    return bytes;
  }
  return Status::invalid(path + ": not a regular file or block device");
}

Result<std::unique_ptr<FileDevice>> FileDevice::open(const std::string& path, Mode mode) {
  std::unique_ptr<FileDevice> d(new FileDevice);
  d->path_ = path;
  const int flags = (mode == Mode::kReadWrite ? O_RDWR | O_DSYNC : O_RDONLY) | O_DIRECT | O_CLOEXEC;
  d->fd_.reset(::open(path.c_str(), flags));
  if (!d->fd_.valid()) {
    const int err = errno;
    if (err == ENOENT) return Status::invalid(path + ": no such file (create a volume with 'minihv volume format')");
    if (err == EINVAL) return Status::invalid(path + ": the file system does not support O_DIRECT");
    return Status::from_errno(path + ": open", err);
  }
  auto size = device_size(d->fd_.get(), path);
  if (!size) return size.status();
  struct stat st {};
  if (fstat(d->fd_.get(), &st) == 0) d->block_device_ = S_ISBLK(st.st_mode);
  d->size_ = *size / kBlockSize * kBlockSize;
  MINIHV_TRY(d->ring_.init(kRingEntries).context(path));
  return d;
}

Status FileDevice::check(uint64_t offset, size_t len) const {
  if (offset % kBlockSize || len % kBlockSize)
    return Status::error(path_ + ": unaligned I/O at " + std::to_string(offset));
  if (offset > size_ || len > size_ - offset)
    return Status::error(path_ + ": I/O past the end of the device at " + std::to_string(offset));
  return Status::ok();
}

Status FileDevice::io(bool write, uint64_t offset, uint8_t* buf, size_t len) {
  MINIHV_TRY(check(offset, len));
  if (reinterpret_cast<uintptr_t>(buf) % kBlockSize)
    return Status::error(path_ + ": unaligned buffer for O_DIRECT");
  std::lock_guard lock(mu_);
  if (write) return write_sync(offset, buf, len);
  size_t done = 0;
  while (done < len) {
    io_uring_sqe* sqe = ring_.sqe();
    if (!sqe) return Status::error(path_ + ": io_uring queue full");
    if (write) io_uring_prep_write(sqe, fd_.get(), buf + done, static_cast<unsigned>(len - done), offset + done);
    else io_uring_prep_read(sqe, fd_.get(), buf + done, static_cast<unsigned>(len - done), offset + done);
    sqe->user_data = 1;
    MINIHV_TRY(ring_.submit_and_wait(1));
    int32_t res = 0;
    ring_.reap([&](uint64_t, int32_t r) { res = r; });
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res < 0) return Status::from_errno(path_ + (write ? ": write" : ": read"), -res);
    if (res == 0) return Status::error(path_ + ": unexpected end of file at " + std::to_string(offset + done));
    done += static_cast<size_t>(res);
  }
  return Status::ok();
}

// Writes are plain pwrite(2) in the calling thread. Measured on the test machine (ext4 on a virtio
// disk, two guests running the `disk` workload): a 4 KiB O_DIRECT write through io_uring goes to an
// io-wq worker and took up to 300-680 ms, several times a minute, while the same write by pwrite(2)
// from a thread of the same priority never took more than 50 ms in the same windows; reads through
// io_uring were not affected. A lease renewal is such a write and has 800 ms to land, so metadata
// writes do not go through the ring (the guests' data path does, vmm/devices/virtio_blk).
Status FileDevice::write_sync(uint64_t offset, const uint8_t* buf, size_t len) {
  if (const int64_t late = late_ms_.load(); late > 0) return write_late(offset, buf, len, late);
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pwrite(fd_.get(), buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::from_errno(path_ + ": write");
    if (n == 0) return Status::error(path_ + ": unexpected end of file at " + std::to_string(offset + done));
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

// Only what is async-signal-safe runs in the child (this process has other threads).
Status FileDevice::write_late(uint64_t offset, const uint8_t* buf, size_t len, int64_t late_ms) {
  const pid_t pid = ::fork();
  if (pid < 0) return Status::from_errno(path_ + ": fork for a late write");
  if (pid == 0) {
    struct timespec ts = {static_cast<time_t>(late_ms / 1000), static_cast<long>(late_ms % 1000) * 1000000};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    const ssize_t n = ::pwrite(fd_.get(), buf, len, static_cast<off_t>(offset));
    ::_exit(n == static_cast<ssize_t>(len) ? 0 : 1);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status::error(path_ + ": late write failed");
  return Status::ok();
}

Status FileDevice::read(uint64_t offset, std::span<uint8_t> buf) {
  return io(false, offset, buf.data(), buf.size());
}

Status FileDevice::write(uint64_t offset, std::span<const uint8_t> buf) {
  return io(true, offset, const_cast<uint8_t*>(buf.data()), buf.size());
}

Status FileDevice::zero(uint64_t offset, uint64_t len) {
  MINIHV_TRY(check(offset, len));
  if (len == 0) return Status::ok();
  if (block_device_) {
    uint64_t range[2] = {offset, len};
    if (ioctl(fd_.get(), BLKZEROOUT, range) == 0) return Status::ok();
  } else if (fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       static_cast<off_t>(offset), static_cast<off_t>(len)) == 0) {
    return Status::ok();
  }
  // No hole punching here: write zeros, 1 MiB at a time.
  constexpr size_t kChunk = 1 << 20;
  AlignedBuffer zeros(kChunk);
  std::memset(zeros.data(), 0, zeros.size());
  for (uint64_t done = 0; done < len;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, len - done));
    MINIHV_TRY(write(offset + done, {zeros.data(), n}));
    done += n;
  }
  return Status::ok();
}

}  // namespace minihv::blockdev
