// Volume: everything `minihv volume inspect` shows, as JSON (the CLI prints it as text or JSON).
#include <algorithm>

#include "blockdev/volume.h"

namespace minihv::blockdev {

namespace {

nlohmann::json lease_json(const LeaseRead& r, const LeaseSlot& slot, int64_t now_ms) {
  nlohmann::json j{{"resource", slot.resource}, {"offset_bytes", slot.offset}};
  if (!r.ok()) {
    j["state"] = "damaged";
    j["record"] = to_string(r.check);
    return j;
  }
  j["state"] = r.rec.state == LeaseState::kHeld ? "held" : "free";
  j["generation"] = r.rec.generation;
  if (r.rec.generation == 0) return j;
  j[r.rec.state == LeaseState::kHeld ? "owner" : "last_owner"] = r.rec.owner;
  j["acquired_unix_ms"] = r.rec.acquired_unix_ms;
  j[r.rec.state == LeaseState::kHeld ? "renewed_unix_ms" : "released_unix_ms"] = r.rec.renewed_unix_ms;
  if (r.rec.state == LeaseState::kHeld) {
    // Wall clocks of different hosts are only roughly comparable: for display, never for decisions.
    j["renewed_ms_ago"] = std::max<int64_t>(0, now_ms - r.rec.renewed_unix_ms);
    j["held_ms"] = now_ms - r.rec.acquired_unix_ms;
  }
  j["renewals"] = r.rec.counter;
  return j;
}

}  // namespace

Result<nlohmann::json> Volume::inspect() {
  const int64_t now_ms = clock_.wall_unix_ms();
  const Geometry& g = sb_.geo;
  nlohmann::json j;
  j["path"] = dev_->name();
  j["format_version"] = kFormatVersion;
  j["uuid"] = uuid_string(sb_.uuid);
  j["cluster"] = sb_.cluster;
  j["size_bytes"] = g.volume_size;
  j["created_unix_ms"] = sb_.created_unix_ms;
  j["created_by"] = sb_.created_by;
  // A volume formatted before the second copy existed shows it "blank"; `format` writes both.
  j["superblock"] = {{"block_0", super_note_.empty() ? std::string("ok") : super_note_},
                     {"copy", super_copy_state()}};
  j["timings_ms"] = {{"renew", sb_.timings.renew.count()}, {"fail", sb_.timings.fail.count()},
                     {"dead", sb_.timings.dead.count()}, {"io_timeout", sb_.timings.io_timeout.count()}};
  j["geometry"] = {{"block_size", kBlockSize}, {"admin_lease", g.admin_lease}, {"node_leases", g.node_leases},
                   {"node_slots", g.node_slots}, {"vm_leases", g.vm_leases}, {"vm_slots", g.vm_slots},
                   {"config", g.config}, {"config_copy_blocks", g.config_copy_blocks},
                   {"disk_table", g.disk_table}, {"disk_slots", g.disk_slots}, {"data_start", g.data_start}};

  // Leases: the admin lease, every node slot and every VM slot that was ever used or is damaged.
  nlohmann::json leases = nlohmann::json::array();
  auto add = [&](const LeaseSlot& slot) -> Status {
    auto r = read_lease(slot);
    if (!r) return r.status();
    if (r->ok() && r->rec.generation == 0) return Status::ok();  // never held: not worth a line
    LeaseSlot named = slot;
    if (r->ok() && !r->rec.resource.empty()) named.resource = r->rec.resource;
    leases.push_back(lease_json(*r, named, now_ms));
    return Status::ok();
  };
  MINIHV_TRY(add(admin_slot()));
  for (uint32_t h = 1; h <= g.node_slots; ++h) MINIHV_TRY(add(*node_slot(h)));
  for (uint32_t i = 0; i < g.vm_slots; ++i) MINIHV_TRY(add(*vm_slot(i, "vm slot " + std::to_string(i))));
  j["leases"] = leases;

  auto table = read_disk_table();
  if (!table) return table.status();
  nlohmann::json disks = nlohmann::json::array(), damaged = nlohmann::json::array();
  uint64_t used = 0;
  for (const DiskSlot& s : *table) {
    if (s.check != RecordCheck::kOk) {
      nlohmann::json dj{{"slot", s.slot}, {"record", to_string(s.check)}};
      if (!s.problem.empty()) dj["problem"] = s.problem;
      damaged.push_back(dj);
      continue;
    }
    if (!s.disk) continue;
    const DiskEntry& d = *s.disk;
    used += d.size;
    nlohmann::json dj{{"name", d.name}, {"slot", d.slot}, {"offset_bytes", d.offset}, {"size_bytes", d.size},
                      {"created_unix_ms", d.created_unix_ms}};
    auto r = read_lease(disk_slot(d));
    if (!r) return r.status();
    dj["lease"] = lease_json(*r, disk_slot(d), now_ms);
    disks.push_back(dj);
  }
  j["disks"] = disks;
  if (!damaged.empty()) j["damaged_disk_records"] = damaged;
  j["data_bytes"] = g.volume_size - g.data_start;
  j["used_bytes"] = used;
  auto cfg = read_config();
  if (!cfg) return cfg.status();
  j["config_generation"] = cfg->generation;
  return j;
}

}  // namespace minihv::blockdev
