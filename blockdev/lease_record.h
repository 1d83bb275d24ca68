// blockdev/lease_record.h — the 4 KiB record of one delta lease (a node, a VM/disk, or the admin
// lease) and how to read one from the device.
#pragma once

#include <cstdint>
#include <string>

#include "blockdev/device.h"
#include "blockdev/record.h"

namespace minihv::blockdev {

enum class LeaseState : uint32_t { kFree = 0, kHeld = 1 };

struct LeaseRecord {
  LeaseState state = LeaseState::kFree;
  uint64_t generation = 0;        // +1 at every acquisition
  uint64_t nonce = 0;             // random per acquisition: which incarnation holds it
  uint64_t counter = 0;           // +1 at every write by the holder (the "timestamp" of a delta lease)
  int64_t acquired_unix_ms = 0;   // display only: wall clocks are never compared
  int64_t renewed_unix_ms = 0;    // display only (for a free record: when it was released)
  std::string owner;              // who holds it (or last held it): "host/pid 123", "node3"
  std::string resource;           // what it guards: "disk web", "node 3", "admin"

  void encode(Block& b, uint64_t offset, const Uuid& uuid) const;
  static LeaseRecord decode(const Block& b);  // after check_record() said kOk
};

// A slot as read: the raw block (what a watcher compares), its check, and the record if kOk.
struct LeaseRead {
  Block raw;
  RecordCheck check = RecordCheck::kBlank;
  LeaseRecord rec;
  bool ok() const { return check == RecordCheck::kOk; }
  bool held() const { return ok() && rec.state == LeaseState::kHeld; }
};

Result<LeaseRead> read_lease(Device& dev, const Uuid& uuid, uint64_t offset);

}  // namespace minihv::blockdev
