#include "vmm/boot/kernel_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fd.h"

namespace minihv::boot {

Result<std::vector<uint8_t>> read_boot_file(const std::string& path, const char* what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno(std::string(what) + " " + path);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::from_errno(std::string(what) + " " + path);
  if (!S_ISREG(st.st_mode)) return Status::error(std::string(what) + " " + path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxBootFileSize)
    return Status::error(std::string(what) + " " + path + ": larger than 2 GiB");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::from_errno(std::string(what) + " " + path + ": read");
    if (n == 0) return Status::error(std::string(what) + " " + path + ": file shrank while reading");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

}  // namespace minihv::boot
