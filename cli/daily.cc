// The once-a-day stamps of cli/daily.h.
#include "cli/daily.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>

#include "common/fd.h"

namespace minihv::cli {

namespace {

constexpr std::time_t kOneDaySeconds = 24 * 60 * 60;
constexpr mode_t kStampDirMode = 0700;
constexpr mode_t kStampMode = 0600;

std::string stamp_dir() {
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) return std::string(xdg) + "/minihv";
  if (::access("/run", W_OK) == 0) return "/run/minihv";
  return "/tmp/minihv-" + std::to_string(::getuid());
}

}  // namespace

bool due_today(const std::string& name) {
  const std::string dir = stamp_dir();
  ::mkdir(dir.c_str(), kStampDirMode);  // may exist already
  const std::string path = dir + "/" + name + ".said";
  struct stat st {};
  const std::time_t now = std::time(nullptr);
  if (::stat(path.c_str(), &st) == 0 && now - st.st_mtime < kOneDaySeconds && st.st_mtime <= now) return false;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, kStampMode));
  if (fd.valid()) ::futimens(fd.get(), nullptr);  // now
  return true;
}

}  // namespace minihv::cli
