#include "blockdev/disk_attach.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "common/log.h"

namespace minihv::blockdev {

std::optional<VolumeDiskSpec> parse_volume_disk(const std::string& text) {
  struct stat st {};
  if (::stat(text.c_str(), &st) == 0) return std::nullopt;  // an existing image, colon or not
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  VolumeDiskSpec spec{text.substr(0, colon), text.substr(colon + 1)};
  if (!Volume::looks_like_volume(spec.volume)) return std::nullopt;
  return spec;
}

Result<std::unique_ptr<VolumeDisk>> VolumeDisk::attach(const VolumeDiskSpec& spec, const std::string& owner,
                                                       LeaseKeeper::LostFn on_lost) {
  std::unique_ptr<VolumeDisk> d(new VolumeDisk);
  d->spec_ = spec;
  auto vol = Volume::open(spec.volume, true);
  if (!vol) return vol.status();
  d->volume_ = std::move(*vol);
  auto disk = d->volume_->find_disk(spec.disk);
  if (!disk) return disk.status();
  d->disk_ = *disk;
  auto lease = d->volume_->acquire(d->volume_->disk_slot(d->disk_), owner);
  if (!lease) return lease.status();
  LOG_INFO("disk %s: lease taken (%s)", d->name().c_str(), owner.c_str());
  d->keeper_ = std::make_unique<LeaseKeeper>(std::move(*lease), std::move(on_lost));
  return d;
}

VolumeDisk::~VolumeDisk() {
  if (Status s = release(); !s) LOG_WARN("disk %s: %s", name().c_str(), s.message().c_str());
}

Result<UniqueFd> VolumeDisk::open_data_fd() const {
  UniqueFd fd(::open(spec_.volume.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno(spec_.volume + ": open for disk " + spec_.disk);
  return fd;
}

std::function<bool()> VolumeDisk::write_gate() const {
  return [v = keeper_->validity()] { return v->may_write(); };
}

Status VolumeDisk::release() {
  if (released_ || !keeper_) return Status::ok();
  released_ = true;
  Status s = keeper_->release();
  if (s) LOG_INFO("disk %s: lease released", name().c_str());
  return s;
}

}  // namespace minihv::blockdev
