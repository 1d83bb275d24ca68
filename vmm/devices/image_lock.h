// vmm/devices/image_lock.h — an OFD lock on a raw disk image, so that two VMMs never write one image.
//
// Owns: taking, holding and releasing a whole-file open-file-description lock (fcntl F_OFD_SETLK;
// read for a read-only disk, write for a writable one: readers share, a writer excludes everyone
// else, as QEMU does) and naming who holds one that refuses us.
// Must not know: virtio, guests, migration (the VM decides when to take and release).
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

enum class ImageLockMode { kRead, kWrite };

class ImageLock {
public:
  // Holds a duplicate of `fd` (the same open file description, so the lock is that of the fd the
  // disk's I/O uses) and takes no lock yet. `path` is for messages.
  static Result<ImageLock> on(int fd, ImageLockMode mode, const std::string& path);

  // Takes the lock now or fails at once: bad input "in use by another process (pid N, CMDLINE)"
  // when another open file description holds a conflicting one. Taking it again is a no-op.
  Status acquire();
  // Lets go (a migration's source once the destination has the VM). Harmless when not held.
  void release();
  bool held() const { return held_; }
  const std::string& path() const { return path_; }

  ImageLock(ImageLock&& o) noexcept
      : fd_(std::move(o.fd_)), mode_(o.mode_), path_(std::move(o.path_)), held_(std::exchange(o.held_, false)) {}
  ImageLock& operator=(ImageLock&&) = delete;
  ~ImageLock() { release(); }

private:
  ImageLock() = default;
  UniqueFd fd_;
  ImageLockMode mode_ = ImageLockMode::kRead;
  std::string path_;
  bool held_ = false;
};

// "pid N, CMDLINE" of a process holding an OFD lock on the file (device, inode), from the "lock:"
// lines of /proc/PID/fdinfo (/proc/locks shows OFD locks with pid -1); "" when none is found.
std::string image_lock_holder(dev_t device, ino_t inode);

}  // namespace minihv
