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
  for (uint32_t i = 0; i < g.disk_slots; ++i)
    out.push_back(read_disk_slot(*reinterpret_cast<const Block*>(buf.data() + uint64_t{i} * kBlockSize), i));
  refuse_overlaps(out);
  return out;
}

// One record, checked on its own: header and checksum, then every field against the format's rules.
DiskSlot Volume::read_disk_slot(const Block& b, uint32_t i) const {
  const Geometry& g = sb_.geo;
  DiskSlot s;
  s.slot = i;
  s.check = check_record(b, RecordKind::kDisk, block_index(g.disk_record(i)), sb_.uuid);
  if (s.check == RecordCheck::kOk && !disk_record_flag_valid(b)) {
    s.check = RecordCheck::kInvalid;
    s.problem = "its in-use flag is neither 0 nor 1";
  }
  DiskEntry e;
  if (s.check == RecordCheck::kBlank || !decode_disk_record(b, i, e)) return s;
  const std::string problem = entry_problem(e);
  if (s.check == RecordCheck::kOk && problem.empty()) {
    s.disk = std::move(e);
    return s;
  }
  if (s.check == RecordCheck::kOk) {
    s.check = RecordCheck::kInvalid;
    s.problem = problem;
  }
  s.untrusted = std::move(e);
  return s;
}

// Why an in-use record cannot be trusted, or "": the extent must be 1 MiB aligned and lie in the
// data area (an offset past the end must not wrap the size check), the name one minihv writes.
std::string Volume::entry_problem(const DiskEntry& e) const {
  const Geometry& g = sb_.geo;
  auto bytes = [](uint64_t v) { return std::to_string(v); };
  if (Status n = validate_name("disk name", e.name); !n)
    return printable(e.name) ? n.message() : "its disk name is not printable text";
  if (e.size == 0) return "disk '" + e.name + "' has an empty extent";
  if (e.offset % kExtentAlign || e.size % kExtentAlign)
    return "disk '" + e.name + "' has an extent that is not 1 MiB aligned (offset " + bytes(e.offset) + ", size " +
           bytes(e.size) + ")";
  if (e.offset < g.data_start)
    return "disk '" + e.name + "' starts at byte " + bytes(e.offset) + ", inside the metadata (data starts at " +
           bytes(g.data_start) + ")";
  if (e.offset >= g.volume_size || e.size > g.volume_size - e.offset)  // (no wrap past the end)
    return "disk '" + e.name + "' reaches past the end of the volume (offset " + bytes(e.offset) + ", size " +
           bytes(e.size) + ", volume " + bytes(g.volume_size) + " bytes)";
  return "";
}

// Two records that claim the same bytes, or the same name, are both refused: either may be the
// forged or stale one, and a VM writing through one would write the other's data.
void Volume::refuse_overlaps(std::vector<DiskSlot>& table) {
  for (size_t i = 0; i < table.size(); ++i)
    for (size_t j = i + 1; j < table.size() && table[i].disk; ++j) {
      if (!table[j].disk) continue;
      const DiskEntry &a = *table[i].disk, &b = *table[j].disk;
      const bool overlap = a.offset < b.offset + b.size && b.offset < a.offset + a.size;
      if (!overlap && a.name != b.name) continue;
      const std::string what = overlap ? "has an extent that overlaps" : "has the same name as";
      for (auto [x, y] : {std::pair{&table[i], &table[j]}, std::pair{&table[j], &table[i]}}) {
        if (x->problem.empty())
          x->problem = "disk '" + x->disk->name + "' " + what + " disk-table slot " + std::to_string(y->slot) +
                       " ('" + y->disk->name + "')";
      }
      for (DiskSlot* x : {&table[i], &table[j]}) x->check = RecordCheck::kInvalid;
      // Keep both entries until every pair is seen; they are demoted below.
    }
  for (DiskSlot& s : table)
    if (s.check == RecordCheck::kInvalid && s.disk) {
      s.untrusted = std::move(s.disk);
      s.disk.reset();
    }
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
  auto table = read_disk_table();
  if (!table) return table.status();
  std::vector<DiskEntry> disks;
  for (auto& s : *table) {
    if (s.disk && s.disk->name == name) return *s.disk;
    if (s.disk) disks.push_back(*s.disk);
  }
  // A record that names it but is not trusted says why, rather than "no such disk".
  for (auto& s : *table)
    if (s.untrusted && s.untrusted->name == name)
      return Status::error("volume " + dev_->name() + ": the record of disk '" + name + "' (disk-table slot " +
                           std::to_string(s.slot) + ") is " + to_string(s.check) +
                           (s.problem.empty() ? "" : ": " + s.problem) + "; it is not used");
  std::string names;
  for (auto& d : disks) names += (names.empty() ? "" : ", ") + d.name;
  return Status::invalid("volume " + dev_->name() + " has no disk '" + name + "' (disks: " +
                         (names.empty() ? "none; create one with 'minihv volume disk create'" : names) + ")");
}

// First fit in the data area, around every extent a record claims — damaged ones too, as far as
// their claim reaches into the data area (a forged size must not wrap).
Result<uint64_t> Volume::allocate_extent(const std::vector<DiskSlot>& table, uint64_t size) const {
  const Geometry& g = sb_.geo;
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (const DiskSlot& s : table)
    for (const auto* d : {s.disk ? &*s.disk : nullptr, s.untrusted ? &*s.untrusted : nullptr}) {
      if (!d) continue;
      const uint64_t lo = std::max(d->offset, g.data_start);
      const uint64_t end = d->size > UINT64_MAX - d->offset ? UINT64_MAX : d->offset + d->size;
      const uint64_t hi = std::min(align_up(std::min(end, g.volume_size), kExtentAlign), g.volume_size);
      if (lo < hi) used.push_back({lo, hi});
    }
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
  std::optional<uint32_t> free_slot;
  for (auto& s : *table) {
    if ((s.disk && s.disk->name == name) || (s.untrusted && s.untrusted->name == name))
      return Status::invalid("volume already has a disk named '" + name + "'" +
                             (s.disk ? "" : " (its record is damaged: see 'minihv volume inspect')"));
    // A damaged record is never reused: its extent may still belong to someone.
    if (!free_slot && s.check == RecordCheck::kOk && !s.disk) free_slot = s.slot;
  }
  if (!free_slot) return Status::invalid("the disk table is full (" + std::to_string(sb_.geo.disk_slots) + " disks)");
  auto offset = allocate_extent(*table, rounded);
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
