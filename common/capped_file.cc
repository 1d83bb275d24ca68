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

UniqueFd open_for_output(const std::string& path, bool truncate, unsigned mode) {
  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
  return UniqueFd(::open(path.c_str(), flags, mode));
}

}  // namespace

Result<CappedFile> CappedFile::open(const std::string& path, uint64_t cap, Start start, unsigned mode) {
  UniqueFd fd = open_for_output(path, start == Start::kTruncate, mode);
  if (!fd.valid()) return Status::invalid_from_errno(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("stat " + path);
  return CappedFile(path, cap, mode, std::move(fd), static_cast<uint64_t>(st.st_size));
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

void CappedFile::rotate() {
  const std::string old = path_ + ".1";
  if (::rename(path_.c_str(), old.c_str()) != 0 && !warned_) {
    LOG_WARN("%s: cannot rotate to %s: %s; starting it again", path_.c_str(), old.c_str(), std::strerror(errno));
    warned_ = true;
  }
  // Renamed or not, PATH starts empty: the cap holds even where the rename is refused.
  fd_ = open_for_output(path_, true, mode_);
  size_ = 0;
}

}  // namespace minihv
