// Volume: who is alive on a volume — the holders a destructive command must not run over.
#include <algorithm>

#include "blockdev/volume.h"

namespace minihv::blockdev {

namespace {

// One held lease being watched: its slot, the bytes first read and whether they have changed.
struct Watched {
  LeaseSlot slot;
  LeaseRead first;
  LeaseRecord latest;
  bool changed = false;
};

std::string describe(const Watched& w, int64_t now_unix_ms) {
  const std::string what = w.latest.resource.empty() ? w.slot.resource : w.latest.resource;
  return what + " " + describe_holder(w.latest, now_unix_ms);
}

}  // namespace

std::vector<LeaseSlot> Volume::all_lease_slots() const {
  std::vector<LeaseSlot> slots{admin_slot()};
  for (uint32_t h = 1; h <= sb_.geo.node_slots; ++h) slots.push_back(*node_slot(h));
  for (uint32_t i = 0; i < sb_.geo.vm_slots; ++i) slots.push_back(*vm_slot(i, "vm slot " + std::to_string(i)));
  return slots;
}

// The delta-lease rule, as a contender applies it (lease.h): a held record that changes while we
// watch it is alive; one unchanged for `dead` is not. Wall clocks are never compared.
Result<std::vector<std::string>> Volume::live_holders() {
  std::vector<Watched> held;
  for (const LeaseSlot& slot : all_lease_slots()) {
    auto r = read_lease(slot);
    if (!r) return r.status();
    if (r->held()) held.push_back({slot, *r, r->rec, false});
  }
  const Nanos start = clock_.now();
  auto all_changed = [&] { return std::all_of(held.begin(), held.end(), [](const Watched& w) { return w.changed; }); };
  while (!held.empty() && !all_changed() && clock_.now() - start < sb_.timings.dead) {
    clock_.sleep_for(sb_.timings.poll());
    for (Watched& w : held) {
      if (w.changed) continue;
      auto r = read_lease(w.slot);
      if (!r) return r.status();
      if (std::equal(std::begin(r->raw.bytes), std::end(r->raw.bytes), std::begin(w.first.raw.bytes))) continue;
      w.changed = true;
      w.latest = r->rec;
      if (!r->held()) w.latest.state = LeaseState::kFree;  // released meanwhile: not a holder
    }
  }
  std::vector<std::string> live;
  for (const Watched& w : held)
    if (w.changed && w.latest.state == LeaseState::kHeld) live.push_back(describe(w, clock_.wall_unix_ms()));
  return live;
}

}  // namespace minihv::blockdev
