// Volume: format, open, and the lease slots.
#include "blockdev/volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "blockdev/disk_record.h"
#include "blockdev/file_device.h"
#include "common/fd.h"
#include "common/log.h"

namespace minihv::blockdev {

namespace {

// Metadata is written in chunks of this size at format time.
constexpr size_t kFormatChunk = 1 << 20;
constexpr mode_t kVolumeFileMode = 0660;

// A device we borrow for a moment: the volume opened on it must not free it.
std::shared_ptr<Device> borrowed(Device& dev) { return {&dev, [](Device*) {}}; }

// Refuses to destroy a volume while anything live holds a lease on it, naming the holders. A volume
// whose superblock cannot be read has no leases anyone could prove: it may be overwritten.
Status refuse_live_holders(Device& dev, Clock& clock) {
  auto vol = Volume::open_device(borrowed(dev), clock);
  if (!vol) return Status::ok();
  auto live = (*vol)->live_holders();
  if (!live) return live.status().context("reading the volume's leases");
  if (live->empty()) return Status::ok();
  std::string who;
  for (const std::string& h : *live) who += "\n  " + h;
  return Status::error(dev.name() + " is in use: " + std::to_string(live->size()) +
                       " live lease(s) on it, formatting would destroy what they guard; stop them first:" + who);
}

// Whether either superblock (block 0 or its copy) says this device holds a volume: one whose
// block 0 is damaged still opens from the copy, and nodes may be running on it.
bool holds_volume(Device& dev, const Block& block0) {
  if (has_magic(block0, RecordKind::kSuper)) return true;
  Block copy;
  return dev.size() >= kBackupSuperOffset + kBlockSize && dev.read(kBackupSuperOffset, copy.span()) &&
         has_magic(copy, RecordKind::kSuper);
}

Status check_overwrite(Device& dev, const FormatOptions& o, Clock& clock) {
  Block b;
  MINIHV_TRY(dev.read(0, b.span()));
  if (holds_volume(dev, b)) {
    if (!o.force) {
      auto vol = Volume::open_device(borrowed(dev), clock);
      const std::string cluster = vol ? " of cluster '" + (*vol)->super().cluster + "'" : "";
      return Status::invalid(dev.name() + " is already a minihv volume" + cluster + "; add --force to overwrite it");
    }
    MINIHV_TRY(refuse_live_holders(dev, clock));
    return o.confirm ? o.confirm() : Status::ok();
  }
  if (!o.force && std::any_of(std::begin(b.bytes), std::end(b.bytes), [](uint8_t x) { return x != 0; }))
    return Status::invalid(dev.name() + " is not empty; add --force to overwrite it");
  return Status::ok();
}

// Everything a format can refuse before it touches the path: a failed format leaves no trace.
Status check_options(const FormatOptions& o) {
  MINIHV_TRY(validate_name("cluster name", o.cluster));
  MINIHV_TRY(o.timings.validate());
  if (o.size == 0) return Status::ok();
  auto geo = Geometry::for_size(o.size);
  return geo ? Status::ok() : geo.status().context("--size");
}

// Removes the file a failed format created (never one that was there before).
class CreatedFile {
public:
  CreatedFile(std::string path, bool created) : path_(std::move(path)), kept_(!created) {}
  ~CreatedFile() {
    if (!kept_) ::unlink(path_.c_str());
  }
  CreatedFile(const CreatedFile&) = delete;
  CreatedFile& operator=(const CreatedFile&) = delete;
  void keep() { kept_ = true; }

private:
  std::string path_;
  bool kept_;
};

}  // namespace

bool Volume::looks_like_volume(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  struct stat st {};
  if (fstat(fd.get(), &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) return false;
  // Block 0, or the superblock's copy (block 0 may be the damaged one).
  for (const uint64_t at : {uint64_t{0}, kBackupSuperOffset}) {
    Block b;
    if (::pread(fd.get(), b.bytes, kBlockSize, static_cast<off_t>(at)) == static_cast<ssize_t>(kBlockSize) &&
        has_magic(b, RecordKind::kSuper))
      return true;
  }
  return false;
}

Status Volume::format(const std::string& path, const FormatOptions& o) {
  MINIHV_TRY(check_options(o));
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
    return Status::invalid(path + ": not a regular file or block device");
  if (exists && S_ISREG(st.st_mode) && st.st_size > 0 && !o.force) {
    if (looks_like_volume(path)) {
      auto dev = FileDevice::open(path, FileDevice::Mode::kReadOnly);
      if (dev) return check_overwrite(**dev, o, system_clock());
    }
    return Status::invalid(path + " is not empty (" + std::to_string(st.st_size) +
                           " bytes); add --force to overwrite it");
  }
  if (!exists && o.size == 0) return Status::invalid(path + " does not exist: give --size to create it");
  if (exists && S_ISBLK(st.st_mode) && o.size) return Status::invalid(path + " is a block device: its size is fixed, drop --size");
  // An existing volume is checked before its file is resized: a refused format changes nothing.
  if (exists && (S_ISBLK(st.st_mode) || st.st_size >= static_cast<off_t>(kBlockSize))) {
    auto old = FileDevice::open(path, FileDevice::Mode::kReadOnly);
    if (!old) return old.status();
    MINIHV_TRY(check_overwrite(**old, o, system_clock()));
  }
  CreatedFile created(path, !exists);
  if (!exists || o.size) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | (exists ? 0 : O_CREAT | O_EXCL), kVolumeFileMode));
    if (!fd.valid()) return Status::from_errno(path + (exists ? ": open" : ": create"));
    if (o.size && ftruncate(fd.get(), static_cast<off_t>(o.size)) < 0) return Status::from_errno(path + ": set size");
  }
  auto dev = FileDevice::open(path, FileDevice::Mode::kReadWrite);
  if (!dev) return dev.status();
  MINIHV_TRY(write_volume(**dev, o, system_clock()));
  created.keep();
  return Status::ok();
}

Status Volume::format_device(Device& dev, const FormatOptions& o, Clock& clock) {
  MINIHV_TRY(check_options(o));
  MINIHV_TRY(check_overwrite(dev, o, clock));
  return write_volume(dev, o, clock);
}

Status Volume::write_volume(Device& dev, const FormatOptions& o, Clock& clock) {
  auto geo = Geometry::for_size(dev.size());
  if (!geo) return geo.status();
  Superblock sb;
  sb.uuid = random_uuid();
  sb.cluster = o.cluster;
  sb.geo = *geo;
  sb.timings = o.timings;
  sb.created_unix_ms = clock.wall_unix_ms();
  sb.created_by = o.created_by.empty() ? default_owner() : o.created_by;

  // First unmake any old volume (a half-done format must not look like the old one): its second
  // superblock, then block 0, so a reader never finds block 0 gone and the old copy still there.
  // Then every metadata record, then the second copy and the superblock that make it a volume.
  Block zero;
  MINIHV_TRY(dev.write(kBackupSuperOffset, zero.span()));
  MINIHV_TRY(dev.write(0, zero.span()));
  AlignedBuffer meta(sb.geo.data_start);
  std::memset(meta.data(), 0, meta.size());
  auto at = [&](uint64_t off) -> Block& { return *reinterpret_cast<Block*>(meta.data() + off); };
  LeaseRecord free;
  free.resource = "admin";
  free.encode(at(sb.geo.admin_lease), sb.geo.admin_lease, sb.uuid);
  for (uint32_t h = 1; h <= sb.geo.node_slots; ++h) {
    free.resource = "node " + std::to_string(h);
    free.encode(at(sb.geo.node_lease(h)), sb.geo.node_lease(h), sb.uuid);
  }
  free.resource.clear();
  for (uint32_t i = 0; i < sb.geo.vm_slots; ++i) free.encode(at(sb.geo.vm_lease(i)), sb.geo.vm_lease(i), sb.uuid);
  for (unsigned c = 0; c < 2; ++c) encode_config_header({}, at(sb.geo.config_copy(c)), sb.geo.config_copy(c), sb.uuid);
  for (uint32_t i = 0; i < sb.geo.disk_slots; ++i)
    encode_disk_record(nullptr, at(sb.geo.disk_record(i)), sb.geo.disk_record(i), sb.uuid);
  for (uint64_t off = kBlockSize; off < meta.size(); off += kFormatChunk) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kFormatChunk, meta.size() - off));
    MINIHV_TRY(dev.write(off, {meta.data() + off, n}));
  }
  Block b;
  sb.encode(b, kBackupSuperOffset);
  MINIHV_TRY(dev.write(kBackupSuperOffset, b.span()));
  sb.encode(b);
  return dev.write(0, b.span());
}

Result<std::unique_ptr<Volume>> Volume::open(const std::string& path, bool writable, Clock& clock) {
  auto dev = FileDevice::open(path, writable ? FileDevice::Mode::kReadWrite : FileDevice::Mode::kReadOnly);
  if (!dev) return dev.status();
  return open_device(std::shared_ptr<Device>(std::move(*dev)), clock);
}

Result<std::unique_ptr<Volume>> Volume::open_device(std::shared_ptr<Device> dev, Clock& clock) {
  if (dev->size() < kBlockSize) return Status::invalid(dev->name() + ": not a minihv volume (too small)");
  Block b;
  MINIHV_TRY(dev->read(0, b.span()));
  auto sb = Superblock::decode(b, dev->name());
  std::string note;
  // Block 0 damaged or overwritten: the second copy (never for a newer format, which we must not read).
  if (!sb && check_record_any_uuid(b, RecordKind::kSuper, 0) != RecordCheck::kNewer) {
    auto copy = read_super_copy(*dev);
    if (copy) {
      note = sb.status().message() + "; using the copy at block " + std::to_string(block_index(kBackupSuperOffset));
      LOG_WARN("volume %s", note.c_str());
      sb = std::move(copy);
    }
  }
  if (!sb) return sb.status();
  if (sb->geo.volume_size > dev->size())
    return Status::error(dev->name() + ": the volume is " + std::to_string(sb->geo.volume_size) +
                         " bytes but the device only " + std::to_string(dev->size()) + " (truncated?)");
  auto vol = std::unique_ptr<Volume>(new Volume(std::move(dev), clock, std::move(*sb)));
  vol->super_note_ = std::move(note);
  return vol;
}

Result<Superblock> Volume::read_super_copy(Device& dev) {
  if (dev.size() < kBackupSuperOffset + kBlockSize) return Status::error(dev.name() + ": too small for a superblock copy");
  Block b;
  MINIHV_TRY(dev.read(kBackupSuperOffset, b.span()));
  return Superblock::decode(b, dev.name() + " (superblock copy)", kBackupSuperOffset);
}

std::string Volume::super_copy_state() {
  Block b, want;
  if (!dev_->read(kBackupSuperOffset, b.span())) return "unreadable";
  const RecordCheck c = check_record(b, RecordKind::kSuper, block_index(kBackupSuperOffset), sb_.uuid);
  if (c != RecordCheck::kOk) return to_string(c);
  sb_.encode(want, kBackupSuperOffset);
  return std::memcmp(b.bytes, want.bytes, kBlockSize) == 0 ? "ok" : "differs from the superblock in use";
}

LeaseSlot Volume::admin_slot() const { return {sb_.geo.admin_lease, "admin"}; }

Result<LeaseSlot> Volume::node_slot(uint32_t host_id) const {
  if (host_id < 1 || host_id > sb_.geo.node_slots)
    return Status::invalid("host id " + std::to_string(host_id) + ": must be 1.." + std::to_string(sb_.geo.node_slots));
  return LeaseSlot{sb_.geo.node_lease(host_id), "node " + std::to_string(host_id)};
}

Result<LeaseSlot> Volume::vm_slot(uint32_t slot, const std::string& resource) const {
  if (slot >= sb_.geo.vm_slots)
    return Status::invalid("VM lease slot " + std::to_string(slot) + ": must be below " + std::to_string(sb_.geo.vm_slots));
  return LeaseSlot{sb_.geo.vm_lease(slot), resource};
}

LeaseSlot Volume::disk_slot(const DiskEntry& d) const { return {sb_.geo.vm_lease(d.slot), "disk " + d.name}; }

Result<LeaseRead> Volume::read_lease(const LeaseSlot& slot) {
  return blockdev::read_lease(*dev_, sb_.uuid, slot.offset);
}

Result<std::unique_ptr<Lease>> Volume::acquire(const LeaseSlot& slot, const std::string& owner, AcquireOptions opts) {
  return acquire_lease(*dev_, clock_, sb_.uuid, slot, sb_.timings, owner, opts);
}

}  // namespace minihv::blockdev
