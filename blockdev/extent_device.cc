#include "blockdev/extent_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace minihv::blockdev {
namespace {

constexpr uint32_t kLogicalBlock = 4096;
// LOOP_CTL_GET_FREE names a free device; another process may bind it first (EBUSY): ask again.
constexpr int kBindAttempts = 16;
constexpr char kLoopControl[] = "/dev/loop-control";

Result<UniqueFd> open_fd(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Status::from_errno("open " + path);
  return UniqueFd(fd);
}

// Binds a free loop device to the extent; `taken` says another process bound that device first.
Result<ExtentDevice> bind_free_device(int control, int backing, uint64_t offset, uint64_t length, bool& taken) {
  const int n = ::ioctl(control, LOOP_CTL_GET_FREE);
  if (n < 0) return Status::from_errno("LOOP_CTL_GET_FREE");
  const std::string path = "/dev/loop" + std::to_string(n);
  auto dev = open_fd(path, O_RDWR | O_DIRECT);
  if (!dev) return dev.status();
  loop_config config{};
  config.fd = static_cast<uint32_t>(backing);
  config.block_size = kLogicalBlock;
  config.info.lo_offset = offset;
  config.info.lo_sizelimit = length;
  config.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), "minihv extent", LO_NAME_SIZE - 1);
  if (::ioctl(dev->get(), LOOP_CONFIGURE, &config) < 0) {
    taken = errno == EBUSY;
    return Status::from_errno("LOOP_CONFIGURE " + path);
  }
  return ExtentDevice{std::move(dev).value(), path};
}

// The kernel falls back to buffered I/O when it cannot do direct I/O to the volume: a write it
// called done would then sit in the page cache and could reach the volume after a fence.
Status check_direct_io(const ExtentDevice& d) {
  const std::string attr = "/sys/block/" + d.path.substr(std::strlen("/dev/")) + "/loop/dio";
  std::ifstream in(attr);
  int dio = 0;
  if (!(in >> dio)) return Status::error("cannot read " + attr);
  if (dio != 1)
    return Status::error(d.path + ": the kernel does direct I/O to the volume only when its file system can "
                         "(not tmpfs before Linux 6.6); without it a write could reach the volume after a fence");
  return Status::ok();
}

}  // namespace

Result<uint64_t> device_size(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) < 0) return Status::from_errno("fstat");
  if (!S_ISBLK(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  uint64_t bytes = 0;
  if (::ioctl(fd, BLKGETSIZE64, &bytes) < 0) return Status::from_errno("BLKGETSIZE64");
  return bytes;
}

Status extent_devices_available() {
  const int fd = ::open(kLoopControl, O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    return Status::ok();
  }
  const int err = errno;
  return Status::from_errno(std::string("open ") + kLoopControl, err)
      .context(err == ENOENT ? "no loop driver (modprobe loop)" : "loop devices");
}

Result<ExtentDevice> make_extent_device(const std::string& volume_path, uint64_t offset, uint64_t length) {
  if (offset % kLogicalBlock || length % kLogicalBlock || length == 0)
    return Status::invalid("extent at " + std::to_string(offset) + " of " + std::to_string(length) +
                           " bytes is not in whole 4 KiB blocks");
  auto backing = open_fd(volume_path, O_RDWR | O_DIRECT);
  if (!backing) return backing.status();
  auto control = open_fd(kLoopControl, O_RDWR);
  if (!control) return control.status().context("a loop device for the VM's disk");
  Result<ExtentDevice> d = Status::error("no free loop device");
  bool taken = true;
  for (int attempt = 0; taken && attempt < kBindAttempts; ++attempt) {
    taken = false;
    d = bind_free_device(control->get(), backing->get(), offset, length, taken);
  }
  if (!d) return d.status().context(volume_path);
  // From here the device goes with d's fd (autoclear); the checks below only read it.
  MINIHV_TRY(check_direct_io(*d));
  auto size = device_size(d->fd.get());
  if (!size) return size.status().context(d->path);
  if (*size != length)
    return Status::error(d->path + " holds " + std::to_string(*size) + " bytes, not the extent's " +
                         std::to_string(length) + " (is the volume shorter than its disk table says?)");
  return d;
}

Result<uint64_t> requests_in_flight(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return Status::from_errno("fstat");
  if (!S_ISBLK(st.st_mode)) return Status::invalid("not a block device");
  const std::string stat =
      "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) + "/inflight";
  std::ifstream in(stat);
  uint64_t reads = 0, writes = 0;
  if (!(in >> reads >> writes)) return Status::from_errno("read " + stat);
  return reads + writes;
}

}  // namespace minihv::blockdev
