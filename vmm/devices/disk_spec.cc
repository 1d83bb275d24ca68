#include "vmm/devices/disk_spec.h"

#include <sys/stat.h>

#include <cerrno>

namespace minihv {

namespace {

constexpr const char* kOnErrorKey = ",on-error=";
constexpr int kStopErrors[] = {ENOSPC, EDQUOT, EIO};

}  // namespace

Result<DiskSpec> parse_disk_spec(const std::string& text) {
  struct stat st {};
  const size_t at = text.rfind(kOnErrorKey);
  if (at == std::string::npos || ::stat(text.c_str(), &st) == 0) return DiskSpec{text, DiskErrorAction::kStop};
  const std::string value = text.substr(at + std::string(kOnErrorKey).size());
  DiskSpec spec{text.substr(0, at), DiskErrorAction::kStop};
  if (value == "report") spec.on_error = DiskErrorAction::kReport;
  else if (value != "stop") return Status::invalid("on-error=" + value + ": want stop or report");
  if (spec.target.empty()) return Status::invalid("no image before on-error=");
  return spec;
}

bool stops_on_error(int err) {
  for (int e : kStopErrors)
    if (err == e) return true;
  return false;
}

}  // namespace minihv
