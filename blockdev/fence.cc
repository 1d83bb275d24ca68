#include "blockdev/fence.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace minihv::blockdev {

namespace {

constexpr size_t kPage = 4096;
// Once the holder has mapped the page: nobody else can map it writable, write(2) it, resize it or
// take the seals off. The holder's own mapping stays writable (F_SEAL_FUTURE_WRITE's point).
constexpr int kSeals = F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

Result<void*> map_page(int fd, int prot) {
  void* p = ::mmap(nullptr, kPage, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Status::from_errno("mapping the fence page");
  return p;
}

}  // namespace

static_assert(std::atomic<int64_t>::is_always_lock_free, "the fence word is shared between processes");

Result<std::shared_ptr<Fence>> Fence::create() {
  // Close-on-exec: only the VM it belongs to gets it (the node dup2s it to the child's fd 3).
  UniqueFd fd(::memfd_create("minihv-fence", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return Status::from_errno("memfd_create for a VM fence");
  if (::ftruncate(fd.get(), kPage) != 0) return Status::from_errno("sizing the fence page");
  auto p = map_page(fd.get(), PROT_READ | PROT_WRITE);
  if (!p) return p.status();
  auto fence = std::shared_ptr<Fence>(new Fence(std::move(fd), *p));
  new (*p) std::atomic<int64_t>(0);
  if (::fcntl(fence->fd(), F_ADD_SEALS, kSeals) != 0) return Status::from_errno("sealing the fence page");
  return fence;
}

Result<std::shared_ptr<Fence>> Fence::attach(int fd) {
  UniqueFd owned(fd);
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < static_cast<off_t>(kPage))
    return Status::invalid("--fence-fd " + std::to_string(fd) + " is not a fence page from a minihv node");
  // The VM only reads the page: a holder that did not seal it is not a minihv node of this version.
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & kSeals) != kSeals)
    return Status::invalid("--fence-fd " + std::to_string(fd) + " is not sealed read-only by its node");
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto p = map_page(fd, PROT_READ);
  if (!p) return p.status();
  return std::shared_ptr<Fence>(new Fence(std::move(owned), *p));
}

Fence::~Fence() { ::munmap(page_, kPage); }

}  // namespace minihv::blockdev
