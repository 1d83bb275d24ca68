// Volume: the disk table (name -> extent) and the admin lease that serialises its writers.
#include "blockdev/disk_record.h"
#include "blockdev/volume.h"

#include <algorithm>

namespace minihv::blockdev {

namespace {
// A disk-table writer waits this long at most for another administrator to finish.
constexpr Nanos kAdminMaxWait = std::chrono::seconds(15);

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

Result<std::vector<DiskSlot>> Volume::read_disk_table() {
  const Geometry& g = sb_.geo;
  AlignedBuffer buf(uint64_t{g.disk_slots} * kBlockSize);
  MINIHV_TRY(dev_->read(g.disk_table, buf.span()));
  std::vector<DiskSlot> out;
  for (uint32_t i = 0; i < g.disk_slots; ++i) {
    const Block& b = *reinterpret_cast<const Block*>(buf.data() + uint64_t{i} * kBlockSize);
    DiskSlot s;
    s.slot = i;
    s.check = check_record(b, RecordKind::kDisk, block_index(g.disk_record(i)), sb_.uuid);
    DiskEntry e;
    if (s.check == RecordCheck::kOk && decode_disk_record(b, i, e)) {
      // An extent outside the data area is damage, whatever its checksum says.
      if (e.offset < g.data_start || e.size == 0 || e.offset % kExtentAlign || e.size > g.volume_size - e.offset)
        s.check = RecordCheck::kForeign;
      else
        s.disk = std::move(e);
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<DiskEntry>> Volume::list_disks() {
  auto table = read_disk_table();
  if (!table) return table.status();
  std::vector<DiskEntry> disks;
  for (auto& s : *table)
    if (s.disk) disks.push_back(*s.disk);
  return disks;
}

Result<DiskEntry> Volume::find_disk(const std::string& name) {
  auto disks = list_disks();
  if (!disks) return disks.status();
  for (auto& d : *disks)
    if (d.name == name) return d;
  std::string names;
  for (auto& d : *disks) names += (names.empty() ? "" : ", ") + d.name;
  return Status::invalid("volume " + dev_->name() + " has no disk '" + name + "' (disks: " +
                         (names.empty() ? "none; create one with 'minihv volume disk create'" : names) + ")");
}

Result<uint64_t> Volume::allocate_extent(const std::vector<DiskEntry>& disks, uint64_t size) const {
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (const auto& d : disks) used.push_back({d.offset, d.offset + align_up(d.size, kExtentAlign)});
  std::sort(used.begin(), used.end());
  uint64_t at = sb_.geo.data_start;
  for (const auto& [lo, hi] : used) {
    if (lo >= at && lo - at >= size) return at;
    at = std::max(at, hi);
  }
  if (sb_.geo.volume_size >= at && sb_.geo.volume_size - at >= size) return at;
  return Status::invalid("volume " + dev_->name() + " has no free extent of " + std::to_string(size >> 20) + " MiB");
}

Result<std::unique_ptr<Lease>> Volume::acquire_admin(const std::string& owner) {
  AcquireOptions o;
  o.wait_for_live_holder = true;
  o.max_wait = kAdminMaxWait;
  auto l = acquire(admin_slot(), owner, o);
  if (!l) return l.status().context("taking the volume's admin lease");
  return l;
}

Status Volume::write_disk_record(uint32_t slot, const DiskEntry* entry, const Lease& admin) {
  Block b;
  encode_disk_record(entry, b, sb_.geo.disk_record(slot), sb_.uuid);
  if (!admin.valid()) return Status::error("the admin lease expired before the disk table was written; nothing changed");
  return dev_->write(sb_.geo.disk_record(slot), b.span());
}

Result<DiskEntry> Volume::create_disk(const std::string& name, uint64_t size, const std::string& owner) {
  MINIHV_TRY(validate_name("disk name", name));
  if (size == 0) return Status::invalid("disk size must be > 0");
  if (size > sb_.geo.volume_size) return Status::invalid("disk size is larger than the volume");
  const uint64_t rounded = align_up(size, kExtentAlign);
  auto admin = acquire_admin(owner);
  if (!admin) return admin.status();
  auto table = read_disk_table();
  if (!table) return table.status();
  std::vector<DiskEntry> disks;
  std::optional<uint32_t> free_slot;
  for (auto& s : *table) {
    if (s.disk && s.disk->name == name) return Status::invalid("volume already has a disk named '" + name + "'");
    if (s.disk) disks.push_back(*s.disk);
    // A damaged record is never reused: its extent may still belong to someone.
    if (!free_slot && s.check == RecordCheck::kOk && !s.disk) free_slot = s.slot;
  }
  if (!free_slot) return Status::invalid("the disk table is full (" + std::to_string(sb_.geo.disk_slots) + " disks)");
  auto offset = allocate_extent(disks, rounded);
  if (!offset) return offset.status();
  DiskEntry e{*free_slot, name, *offset, rounded, clock_.wall_unix_ms()};
  MINIHV_TRY(dev_->zero(e.offset, e.size).context("zeroing the new disk"));
  MINIHV_TRY(write_disk_record(e.slot, &e, **admin));
  MINIHV_TRY((*admin)->release());
  return e;
}

Status Volume::remove_disk(const std::string& name, const std::string& owner) {
  auto admin = acquire_admin(owner);
  if (!admin) return admin.status();
  auto disk = find_disk(name);
  if (!disk) return disk.status();
  // Holding the disk's own lease proves no VM uses it (a live holder refuses us).
  auto lease = acquire(disk_slot(*disk), owner);
  if (!lease) return lease.status().context("cannot remove disk '" + name + "'");
  MINIHV_TRY(write_disk_record(disk->slot, nullptr, **admin));
  MINIHV_TRY((*lease)->release());
  return (*admin)->release();
}

}  // namespace minihv::blockdev
