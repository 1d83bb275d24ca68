#include "blockdev/fence.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace minihv::blockdev {

namespace {

constexpr size_t kPage = 4096;

Result<void*> map_page(int fd) {
  void* p = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Status::from_errno("mapping the fence page");
  return p;
}

}  // namespace

static_assert(std::atomic<int64_t>::is_always_lock_free, "the fence word is shared between processes");

Result<std::shared_ptr<Fence>> Fence::create() {
  // Close-on-exec: only the VM it belongs to gets it (the node dup2s it to the child's fd 3).
  UniqueFd fd(::memfd_create("minihv-fence", MFD_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("memfd_create for a VM fence");
  if (::ftruncate(fd.get(), kPage) != 0) return Status::from_errno("sizing the fence page");
  auto p = map_page(fd.get());
  if (!p) return p.status();
  new (*p) std::atomic<int64_t>(0);
  return std::shared_ptr<Fence>(new Fence(std::move(fd), *p));
}

Result<std::shared_ptr<Fence>> Fence::attach(int fd) {
  UniqueFd owned(fd);
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < static_cast<off_t>(kPage))
    return Status::invalid("--fence-fd " + std::to_string(fd) + " is not a fence page from a minihv node");
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto p = map_page(fd);
  if (!p) return p.status();
  return std::shared_ptr<Fence>(new Fence(std::move(owned), *p));
}

Fence::~Fence() { ::munmap(page_, kPage); }

}  // namespace minihv::blockdev
