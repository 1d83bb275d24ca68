#include "cluster/observer.h"

#include <cstring>

namespace minihv::cluster {

const char* to_string(Liveness l) {
  switch (l) {
    case Liveness::kUnknown: return "unknown";
    case Liveness::kFree: return "free";
    case Liveness::kAlive: return "alive";
    case Liveness::kDead: return "dead";
  }
  return "?";
}

Status LeaseObserver::observe(const blockdev::LeaseSlot& slot) {
  auto r = vol_.read_lease(slot);
  if (!r) {  // unknown, not "unchanged": our own I/O failing must not make everyone look dead
    views_.erase(slot.offset);
    return r.status();
  }
  const blockdev::Nanos now = vol_.clock().now();
  auto& v = views_[slot.offset];
  if (!v.bytes || std::memcmp(v.bytes->bytes, r->raw.bytes, blockdev::kBlockSize) != 0) {
    v.bytes = std::make_shared<const blockdev::Block>(r->raw);
    v.since = now;
  }
  v.check = r->check;
  v.rec = r->rec;
  return Status::ok();
}

const SlotView* LeaseObserver::view(uint64_t offset) const {
  auto it = views_.find(offset);
  return it == views_.end() ? nullptr : &it->second;
}

blockdev::Nanos LeaseObserver::unchanged_for(uint64_t offset) const {
  const SlotView* v = view(offset);
  return v ? vol_.clock().now() - v->since : blockdev::Nanos(0);
}

Liveness LeaseObserver::liveness(uint64_t offset) const {
  const SlotView* v = view(offset);
  if (!v) return Liveness::kUnknown;
  if (v->check == blockdev::RecordCheck::kOk && v->rec.state == blockdev::LeaseState::kFree) return Liveness::kFree;
  if (v->check == blockdev::RecordCheck::kBlank) return Liveness::kFree;
  return unchanged_for(offset) >= dead_ ? Liveness::kDead : Liveness::kAlive;
}

bool LeaseObserver::quiet(uint64_t offset) const { return view(offset) && unchanged_for(offset) >= dead_; }

blockdev::AcquireOptions LeaseObserver::acquire_options(uint64_t offset) const {
  blockdev::AcquireOptions o;
  if (const SlotView* v = view(offset)) {
    o.prior_bytes = v->bytes;
    o.prior_since = v->since;
  }
  return o;
}

std::string node_owner(const std::string& node) { return "node:" + node; }

std::string owner_node(const blockdev::LeaseRecord& r) {
  const std::string& o = r.owner;
  return o.rfind("node:", 0) == 0 ? o.substr(5) : std::string();
}

}  // namespace minihv::cluster
