#include "blockdev/write_deadlines.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace minihv::blockdev {

namespace {

constexpr size_t kPage = 4096;
// The page may not be resized by either side (a shrunk page would fault the other on access).
constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

Result<void*> map_page(int fd) {
  void* p = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Status::from_errno("mapping the write-deadline page");
  return p;
}

}  // namespace

static_assert(std::atomic<int64_t>::is_always_lock_free, "the deadline word is shared between processes");

Result<std::shared_ptr<WriteDeadlines>> WriteDeadlines::create() {
  UniqueFd fd(::memfd_create("minihv-write-deadlines", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return Status::from_errno("memfd_create for a VM's write deadlines");
  if (::ftruncate(fd.get(), kPage) != 0) return Status::from_errno("sizing the write-deadline page");
  if (::fcntl(fd.get(), F_ADD_SEALS, kSeals) != 0) return Status::from_errno("sealing the write-deadline page");
  auto p = map_page(fd.get());
  if (!p) return p.status();
  new (*p) std::atomic<int64_t>(0);
  return std::shared_ptr<WriteDeadlines>(new WriteDeadlines(std::move(fd), *p));
}

Result<std::shared_ptr<WriteDeadlines>> WriteDeadlines::attach(int fd) {
  UniqueFd owned(fd);
  const std::string what = "--deadlines-fd " + std::to_string(fd);
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & kSeals) != kSeals || ::lseek(fd, 0, SEEK_END) != static_cast<off_t>(kPage))
    return Status::invalid(what + " is not a write-deadline page from a minihv node");
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto p = map_page(fd);
  if (!p) return p.status();
  return std::shared_ptr<WriteDeadlines>(new WriteDeadlines(std::move(owned), *p));
}

WriteDeadlines::~WriteDeadlines() { ::munmap(page_, kPage); }

}  // namespace minihv::blockdev
