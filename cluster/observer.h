// cluster/observer.h — a node's continuous view of the leases it cares about.
//
// Every tick the node reads each node lease and each VM (and VM disk) lease once and remembers,
// on its own monotonic clock, since when each record has stood still. A held record that keeps
// changing is a live holder; one unchanged for the volume's `dead` timeout is a dead one. The same
// observation seeds lease acquisition (AcquireOptions::prior_*), so a node that has watched a
// dead holder for `dead` takes its lease over at once instead of watching again from scratch.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "blockdev/volume.h"

namespace minihv::cluster {

enum class Liveness { kUnknown, kFree, kAlive, kDead };
const char* to_string(Liveness l);

struct SlotView {
  std::shared_ptr<const blockdev::Block> bytes;  // the last read
  blockdev::RecordCheck check = blockdev::RecordCheck::kBlank;
  blockdev::LeaseRecord rec;
  blockdev::Nanos since{0};  // first read that showed these bytes
  bool held() const { return check == blockdev::RecordCheck::kOk && rec.state == blockdev::LeaseState::kHeld; }
};

class LeaseObserver {
public:
  LeaseObserver(blockdev::Volume& vol, blockdev::Nanos dead) : vol_(vol), dead_(dead) {}

  // One read of `slot`; an error forgets what was seen (the slot is unknown until read again).
  Status observe(const blockdev::LeaseSlot& slot);
  const SlotView* view(uint64_t offset) const;
  // kFree: released (or never held). kAlive: held and changed within `dead` (or not yet watched
  // that long). kDead: held or unreadable and unchanged for `dead`.
  Liveness liveness(uint64_t offset) const;
  // Unchanged for `dead` (free, blank or held): nobody has touched it, safe to start it.
  bool quiet(uint64_t offset) const;
  blockdev::Nanos unchanged_for(uint64_t offset) const;
  // Options to acquire `offset` that carry this observation.
  blockdev::AcquireOptions acquire_options(uint64_t offset) const;

private:
  blockdev::Volume& vol_;
  blockdev::Nanos dead_;
  std::map<uint64_t, SlotView> views_;
};

// The holder named in a lease owner field "node:NAME" (what minihv nodes write), or empty.
std::string owner_node(const blockdev::LeaseRecord& r);
std::string node_owner(const std::string& node);

}  // namespace minihv::cluster
