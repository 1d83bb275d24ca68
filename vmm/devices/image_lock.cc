#include "vmm/devices/image_lock.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

namespace minihv {

namespace {

// A holder's command line is shown up to this long: enough to recognise a `minihv run`.
constexpr size_t kMaxCmdlineChars = 160;

// Whole file, from offset 0 to its end (and beyond, as it grows).
struct flock whole_file(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  return fl;
}

bool all_digits(const char* s) {
  if (*s == '\0') return false;
  for (; *s; ++s)
    if (*s < '0' || *s > '9') return false;
  return true;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream out;
  out << f.rdbuf();
  return out.str();
}

std::string cmdline_of(const std::string& pid) {
  std::string s = read_text("/proc/" + pid + "/cmdline");
  while (!s.empty() && s.back() == '\0') s.pop_back();
  for (char& c : s)
    if (c == '\0') c = ' ';
  if (s.size() > kMaxCmdlineChars) s = s.substr(0, kMaxCmdlineChars) + "...";
  return s;
}

// Whether one of this process's fds holds an OFD lock on the file (`key`: " MAJ:MIN:INO ", as
// the kernel prints it, hex device numbers).
bool holds_ofd_lock(const std::string& pid, const std::string& key) {
  const std::string dir = "/proc/" + pid + "/fdinfo";
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
  if (!d) return false;
  while (const dirent* e = readdir(d.get())) {
    if (!all_digits(e->d_name)) continue;
    std::istringstream info(read_text(dir + "/" + e->d_name));
    for (std::string line; std::getline(info, line);)
      if (line.rfind("lock:", 0) == 0 && line.find(" OFDLCK ") != std::string::npos &&
          (line + " ").find(key) != std::string::npos)
        return true;
  }
  return false;
}

}  // namespace

Result<ImageLock> ImageLock::on(int fd, ImageLockMode mode, const std::string& path) {
  ImageLock lock;
  lock.fd_.reset(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!lock.fd_.valid()) return Status::from_errno("disk " + path + ": duplicating its fd for the image lock");
  lock.mode_ = mode;
  lock.path_ = path;
  return lock;
}

Status ImageLock::acquire() {
  if (held_) return Status::ok();
  struct flock fl = whole_file(mode_ == ImageLockMode::kWrite ? F_WRLCK : F_RDLCK);
  if (fcntl(fd_.get(), F_OFD_SETLK, &fl) == 0) {
    held_ = true;
    return Status::ok();
  }
  if (errno != EAGAIN && errno != EACCES) return Status::from_errno("locking " + path_);
  struct stat st {};
  const std::string holder = fstat(fd_.get(), &st) == 0 ? image_lock_holder(st.st_dev, st.st_ino) : "";
  return Status::invalid("in use by another process (" +
                         (holder.empty() ? std::string("its holder could not be named") : holder) + ")");
}

void ImageLock::release() {
  if (!held_ || !fd_.valid()) return;
  struct flock fl = whole_file(F_UNLCK);
  (void)fcntl(fd_.get(), F_OFD_SETLK, &fl);  // cannot fail on a valid fd holding a lock
  held_ = false;
}

std::string image_lock_holder(dev_t device, ino_t inode) {
  char key[64];
  std::snprintf(key, sizeof key, " %02x:%02x:%llu ", major(device), minor(device),
                static_cast<unsigned long long>(inode));
  std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir("/proc"), closedir);
  if (!proc) return "";
  while (const dirent* e = readdir(proc.get())) {
    if (!all_digits(e->d_name) || !holds_ofd_lock(e->d_name, key)) continue;
    const std::string cmdline = cmdline_of(e->d_name);
    return "pid " + std::string(e->d_name) + (cmdline.empty() ? "" : ", " + cmdline);
  }
  return "";
}

}  // namespace minihv
