#include "blockdev/layout.h"

namespace minihv::blockdev {

namespace {

// Superblock payload offsets (docs/volume-format.md).
constexpr size_t kSbSize = 32, kSbBlockSize = 40, kSbNodeSlots = 44, kSbVmSlots = 48,
                 kSbDiskSlots = 52, kSbConfigBlocks = 56, kSbAdmin = 64, kSbNodes = 72, kSbVms = 80,
                 kSbConfig = 88, kSbDisks = 96, kSbData = 104, kSbRenew = 112, kSbFail = 116,
                 kSbDead = 120, kSbIo = 124, kSbCreated = 128, kSbCluster = 136, kSbCreatedBy = 200;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

Status LeaseTimings::validate() const {
  auto ms = [](Millis m) { return std::to_string(m.count()) + " ms"; };
  if (renew.count() <= 0 || io_timeout.count() <= 0) return Status::invalid("lease timings: renew and io-timeout must be > 0");
  if (fail < 2 * renew)
    return Status::invalid("lease timings: fail (" + ms(fail) + ") must be at least 2 x renew (" + ms(renew) +
                           "), so one lost renewal is not fatal");
  if (fail <= acquire_delay() + renew)
    return Status::invalid("lease timings: fail (" + ms(fail) + ") must exceed 2 x io-timeout + renew");
  if (dead < fail + 2 * io_timeout)
    return Status::invalid("lease timings: dead (" + ms(dead) + ") must be at least fail + 2 x io-timeout (" +
                           ms(fail + 2 * io_timeout) + "): the margin covers writes still in flight");
  if (dead > Millis(3'600'000)) return Status::invalid("lease timings: dead must be under an hour");
  return Status::ok();
}

Result<Geometry> Geometry::for_size(uint64_t volume_size) {
  Geometry g;
  g.volume_size = volume_size / kBlockSize * kBlockSize;
  g.admin_lease = 1 * kBlockSize;
  g.node_leases = g.admin_lease + kBlockSize;
  g.vm_leases = g.node_leases + uint64_t{kNodeSlots} * kBlockSize;
  g.config = g.vm_leases + uint64_t{kVmSlots} * kBlockSize;
  g.disk_table = g.config + 2ull * kConfigCopyBlocks * kBlockSize;
  g.data_start = align_up(g.disk_table + uint64_t{kDiskSlots} * kBlockSize, kExtentAlign);
  if (g.volume_size < g.data_start + kMinDataBytes)
    return Status::invalid("volume size " + std::to_string(volume_size) + " bytes is too small: at least " +
                           std::to_string((g.data_start + kMinDataBytes) >> 20) + " MiB");
  return g;
}

Status Geometry::validate() const {
  const Result<Geometry> want = for_size(volume_size);
  if (!want) return want.status();
  const Geometry& w = *want;
  if (admin_lease != w.admin_lease || node_leases != w.node_leases || vm_leases != w.vm_leases ||
      config != w.config || disk_table != w.disk_table || data_start != w.data_start ||
      node_slots != w.node_slots || vm_slots != w.vm_slots || disk_slots != w.disk_slots ||
      config_copy_blocks != w.config_copy_blocks)
    return Status::error("superblock geometry does not match format version 1");
  static_assert(kBackupSuperOffset == 1090 * kBlockSize, "the second superblock's place is part of format version 1");
  if (kBackupSuperOffset >= data_start) return Status::error("superblock geometry leaves no room for its second copy");
  return Status::ok();
}

void Superblock::encode(Block& b, uint64_t offset) const {
  b = Block{};
  RecordView v(b);
  v.put_u64(kSbSize, geo.volume_size);
  v.put_u32(kSbBlockSize, kBlockSize);
  v.put_u32(kSbNodeSlots, geo.node_slots);
  v.put_u32(kSbVmSlots, geo.vm_slots);
  v.put_u32(kSbDiskSlots, geo.disk_slots);
  v.put_u32(kSbConfigBlocks, geo.config_copy_blocks);
  v.put_u64(kSbAdmin, geo.admin_lease);
  v.put_u64(kSbNodes, geo.node_leases);
  v.put_u64(kSbVms, geo.vm_leases);
  v.put_u64(kSbConfig, geo.config);
  v.put_u64(kSbDisks, geo.disk_table);
  v.put_u64(kSbData, geo.data_start);
  v.put_u32(kSbRenew, static_cast<uint32_t>(timings.renew.count()));
  v.put_u32(kSbFail, static_cast<uint32_t>(timings.fail.count()));
  v.put_u32(kSbDead, static_cast<uint32_t>(timings.dead.count()));
  v.put_u32(kSbIo, static_cast<uint32_t>(timings.io_timeout.count()));
  v.put_u64(kSbCreated, static_cast<uint64_t>(created_unix_ms));
  v.put_str(kSbCluster, cluster);
  v.put_str(kSbCreatedBy, created_by);
  seal_record(b, RecordKind::kSuper, block_index(offset), uuid);
}

Result<Superblock> Superblock::decode(const Block& b, const std::string& what, uint64_t offset) {
  const RecordCheck c = check_record_any_uuid(b, RecordKind::kSuper, block_index(offset));
  if (c == RecordCheck::kBlank || c == RecordCheck::kForeign)
    return Status::invalid(what + ": not a minihv volume (create one with 'minihv volume format')");
  if (c != RecordCheck::kOk) return Status::error(what + ": superblock is " + to_string(c) + "; not trusted");
  Superblock s;
  Block copy = b;
  RecordView v(copy);
  s.uuid = record_uuid(b);
  if (v.u32(kSbBlockSize) != kBlockSize) return Status::error(what + ": unsupported block size");
  s.geo.volume_size = v.u64(kSbSize);
  s.geo.node_slots = v.u32(kSbNodeSlots);
  s.geo.vm_slots = v.u32(kSbVmSlots);
  s.geo.disk_slots = v.u32(kSbDiskSlots);
  s.geo.config_copy_blocks = v.u32(kSbConfigBlocks);
  s.geo.admin_lease = v.u64(kSbAdmin);
  s.geo.node_leases = v.u64(kSbNodes);
  s.geo.vm_leases = v.u64(kSbVms);
  s.geo.config = v.u64(kSbConfig);
  s.geo.disk_table = v.u64(kSbDisks);
  s.geo.data_start = v.u64(kSbData);
  s.timings.renew = Millis(v.u32(kSbRenew));
  s.timings.fail = Millis(v.u32(kSbFail));
  s.timings.dead = Millis(v.u32(kSbDead));
  s.timings.io_timeout = Millis(v.u32(kSbIo));
  s.created_unix_ms = static_cast<int64_t>(v.u64(kSbCreated));
  s.cluster = v.str(kSbCluster);
  s.created_by = v.str(kSbCreatedBy);
  MINIHV_TRY(s.geo.validate().context(what));
  MINIHV_TRY(s.timings.validate().context(what));
  MINIHV_TRY(validate_name("cluster name", s.cluster).context(what + ": superblock"));
  if (!printable(s.created_by)) return Status::error(what + ": superblock: created-by is not printable text");
  return s;
}

Status validate_name(const std::string& what, const std::string& name) {
  if (name.empty() || name.size() >= kNameBytes)
    return Status::invalid(what + " '" + name + "': must be 1 to " + std::to_string(kNameBytes - 1) + " characters");
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '.' || ch == '_' || ch == '-';
    if (!ok) return Status::invalid(what + " '" + name + "': only letters, digits, '.', '_' and '-' are allowed");
  }
  if (name[0] == '-' || name[0] == '.') return Status::invalid(what + " '" + name + "': must not start with '-' or '.'");
  return Status::ok();
}

}  // namespace minihv::blockdev
