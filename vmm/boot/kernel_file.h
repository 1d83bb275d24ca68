// vmm/boot/kernel_file.h — reading a kernel or initrd file whole, with errors that name the path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace minihv::boot {

constexpr uint64_t kMaxBootFileSize = 1ull << 31;  // 2 GiB: larger is not a kernel or an initrd

Result<std::vector<uint8_t>> read_boot_file(const std::string& path, const char* what);

}  // namespace minihv::boot
