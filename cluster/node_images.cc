#include "cluster/node_images.h"

#include "cluster/config.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

namespace minihv::cluster {

namespace {

// `path` (absolute, normal) is `dir` itself or below it.
bool is_under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

bool under_any(const std::string& path, const std::vector<std::string>& dirs) {
  return std::any_of(dirs.begin(), dirs.end(), [&](const std::string& d) { return is_under(path, d); });
}

std::string normal(const std::string& path) {
  std::string n = std::filesystem::path(path).lexically_normal().string();
  while (n.size() > 1 && n.back() == '/') n.pop_back();
  return n;
}

}  // namespace

Result<ImageDirs> ImageDirs::resolve(const std::vector<std::string>& dirs) {
  ImageDirs out;
  for (const auto& d : dirs) {
    char real[PATH_MAX];
    struct stat st{};
    if (d.empty() || ::realpath(d.c_str(), real) == nullptr || ::stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
      return Status::invalid("--images " + d + " is not a directory (create it and keep the VMs' kernels and "
                             "initrds there, or give --images DIR for the directory that holds them)");
    out.given_.push_back(normal(std::filesystem::absolute(d).string()));
    out.resolved_.push_back(real);
  }
  return out;
}

std::string ImageDirs::describe() const {
  std::string s;
  for (const auto& d : given_) s += (s.empty() ? "--images " : ", --images ") + d;
  return s.empty() ? "no --images given" : s;
}

Status ImageDirs::check(const std::string& what, const std::string& path, const std::string& node) const {
  const Status refused =
      Status::invalid(what + " " + path + " is not under an image directory of node " + node + " (" + describe() + ")");
  if (path.empty() || path[0] != '/') return refused;
  const std::string as_written = normal(path);
  if (!under_any(as_written, given_) && !under_any(as_written, resolved_)) return refused;  // nothing touched
  char real[PATH_MAX];
  if (::realpath(as_written.c_str(), real) == nullptr)  // under one as written: existence there is no secret
    return Status::invalid(what + " " + path + " cannot be read on node " + node + " (every node must have it at "
                           "the same path)");
  if (!under_any(real, resolved_)) return refused;
  return Status::ok();
}

Status check_boot_files(const VmSpec& vm, const std::string& node, const ImageDirs& images) {
  MINIHV_TRY(images.check("kernel", vm.kernel, node));
  if (!vm.initrd.empty()) MINIHV_TRY(images.check("initrd", vm.initrd, node));
  return Status::ok();
}

}  // namespace minihv::cluster
