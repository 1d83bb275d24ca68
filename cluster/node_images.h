// cluster/node_images.h — the directories a node boots VMs from (`minihv node --images DIR`).
//
// A VM's kernel and initrd come from whoever edits the cluster; the node that runs it opens them
// as itself. So a node opens only files under the directories it was told to allow: the path is
// checked as written, then again with symlinks and ".." resolved, before any stat or open of it;
// and every refusal reads the same whether the file exists or not (no probing of the host's files).
//
// Owns: resolving the allowed directories at start, and the check. Must not know: VMs, requests.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace minihv::cluster {

inline constexpr const char* kDefaultImagesDir = "/var/lib/minihv/images";

class ImageDirs {
public:
  // Each of `dirs` must be an existing directory (invalid-input naming the one that is not).
  static Result<ImageDirs> resolve(const std::vector<std::string>& dirs);
  ImageDirs() = default;

  // Ok when `path` lies under an allowed directory; otherwise "<what> <path> is not under an image
  // directory of node <node> (--images ...)". Touches the file system only for paths that are
  // under one as written.
  Status check(const std::string& what, const std::string& path, const std::string& node) const;
  std::string describe() const;  // "--images A --images B"

private:
  std::vector<std::string> given_;     // absolute, lexically normal, as the operator wrote them
  std::vector<std::string> resolved_;  // realpath of each
};

// The kernel (required) and initrd (when given) of `vm` under `images`, as ImageDirs::check says.
struct VmSpec;
Status check_boot_files(const VmSpec& vm, const std::string& node, const ImageDirs& images);

}  // namespace minihv::cluster
