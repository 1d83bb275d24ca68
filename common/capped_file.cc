#include "common/capped_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace minihv {

namespace {

constexpr size_t kCopyChunk = 64 << 10;  // rotation's read-and-write fallback, on the stack

// PATH is read back at rotation, so it is opened for reading too.
UniqueFd open_for_output(const std::string& path, bool truncate, unsigned mode) {
  const int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
  return UniqueFd(::open(path.c_str(), flags, mode));
}

// Copies the first `n` bytes of `from` over `to` (emptied first): copy_file_range where the file
// system does it, else read and write.
bool copy_over(int from, int to, uint64_t n) {
  if (::ftruncate(to, 0) != 0) return false;
  loff_t in = 0, out = 0;
  while (static_cast<uint64_t>(in) < n) {
    const ssize_t c = ::copy_file_range(from, &in, to, &out, n - static_cast<uint64_t>(in), 0);
    if (c > 0) continue;
    if (c < 0 && errno == EINTR) continue;
    if (c == 0) return true;  // PATH is shorter than we counted (someone truncated it)
    break;
  }
  char buf[kCopyChunk];
  while (static_cast<uint64_t>(in) < n) {
    const ssize_t r = ::pread(from, buf, std::min<uint64_t>(sizeof buf, n - static_cast<uint64_t>(in)), in);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r == 0;
    if (::pwrite(to, buf, static_cast<size_t>(r), out) != r) return false;
    in += r;
    out += r;
  }
  return true;
}

}  // namespace

Result<CappedFile> CappedFile::open(const std::string& path, uint64_t cap, Start start, unsigned mode) {
  UniqueFd fd = open_for_output(path, start == Start::kTruncate, mode);
  if (!fd.valid()) return Status::invalid_from_errno(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("stat " + path);
  if (!S_ISREG(st.st_mode)) cap = 0;  // a terminal, a pipe, /dev/null: nothing to rotate
  // PATH.1 is opened now, not at the first rotation: the thread that writes (a vCPU) may not open
  // files once the sandbox is on (common/sandbox.h). Its old content stays until then.
  UniqueFd older;
  if (cap) older = UniqueFd(::open((path + ".1").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, mode));
  return CappedFile(path, cap, std::move(fd), std::move(older), static_cast<uint64_t>(st.st_size));
}

void CappedFile::write(const char* data, size_t n) {
  while (n > 0 && fd_.valid()) {
    size_t take = n;
    if (cap_) {
      if (size_ >= cap_) rotate();
      take = static_cast<size_t>(std::min<uint64_t>(n, cap_ - size_));
    }
    if (!write_all(data, take)) return;
    data += take;
    n -= take;
  }
}

bool CappedFile::write_all(const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd_.get(), data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (!warned_) LOG_WARN("%s: %s: output dropped", path_.c_str(), w < 0 ? std::strerror(errno) : "short write");
      warned_ = true;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
    size_ += static_cast<uint64_t>(w);
  }
  return true;
}

// Rotation works on the two open files only (no rename, no open), so it runs inside the sandbox.
void CappedFile::rotate() {
  const bool kept = older_.valid() && copy_over(fd_.get(), older_.get(), size_);
  if (!kept && !warned_) {
    LOG_WARN("%s: cannot rotate to %s.1: %s; starting it again", path_.c_str(), path_.c_str(),
             older_.valid() ? std::strerror(errno) : "it could not be opened");
    warned_ = true;
  }
  // Kept or not, PATH starts empty: the cap holds even where PATH.1 cannot be written.
  if (::ftruncate(fd_.get(), 0) != 0) {
    if (!warned_) LOG_WARN("%s: cannot empty it: %s; output dropped", path_.c_str(), std::strerror(errno));
    warned_ = true;
    fd_.reset();
  }
  size_ = 0;
}

}  // namespace minihv
