// blockdev/layout.h — where everything lives on a volume (format version 1), the per-volume lease
// timings, and the superblock that records both. docs/volume-format.md is the prose version.
//
//   block 0                superblock
//   block 1                admin lease (guards the disk table and the cluster configuration)
//   64 blocks              node lease slots, one per host id 1..64
//   512 blocks             VM lease slots (slot i guards disk-table entry i; 256.. for the cluster)
//   2 x 128 blocks         cluster configuration, two copies (A/B, newest valid generation wins)
//   256 blocks             disk table, one record per entry (name -> extent)
//   1 block                the superblock's second copy (read when block 0 is damaged)
//   from data_start (1 MiB aligned)   data extents
#pragma once

#include <cstdint>
#include <string>

#include "blockdev/clock.h"
#include "blockdev/record.h"
#include "common/status.h"

namespace minihv::blockdev {

constexpr uint32_t kNodeSlots = 64;
constexpr uint32_t kVmSlots = 512;
constexpr uint32_t kDiskSlots = 256;             // <= kVmSlots: disk i owns VM lease slot i
constexpr uint32_t kConfigCopyBlocks = 128;      // header + 127 blocks of JSON per copy
constexpr uint64_t kExtentAlign = 1ull << 20;    // data_start and every extent: 1 MiB
constexpr uint64_t kMinDataBytes = kExtentAlign; // a volume must hold at least one small disk
// The superblock's second copy: the block after the disk table, at the same place on every
// version-1 volume (so it can be found when block 0 cannot be read). Before data_start.
constexpr uint64_t kBackupSuperOffset =
    (2 + uint64_t{kNodeSlots} + kVmSlots + 2 * uint64_t{kConfigCopyBlocks} + kDiskSlots) * kBlockSize;

// Lease timings, per volume (stored in the superblock). See docs/volume-format.md "Leases".
struct LeaseTimings {
  Millis renew{200};       // a holder rewrites its record this often
  Millis fail{800};        // a holder without a successful renewal this long stops its own I/O
  Millis dead{1400};       // others take over a record unchanged this long
  Millis io_timeout{100};  // the longest a lease read/write may take
  // After writing its claim a contender waits this long, then reads the record back.
  Millis acquire_delay() const { return 2 * io_timeout; }
  // A claim must land within this long after the read that saw the slot free (or its holder dead).
  Millis write_window() const { return io_timeout; }
  // How often a contender re-reads a held record while watching it.
  Millis poll() const { return renew / 2; }
  Status validate() const;
};

struct Geometry {
  uint64_t volume_size = 0;
  uint64_t admin_lease = 0;
  uint64_t node_leases = 0;
  uint64_t vm_leases = 0;
  uint64_t config = 0;       // copy A; copy B follows at config + kConfigCopyBlocks blocks
  uint64_t disk_table = 0;
  uint64_t data_start = 0;
  uint32_t node_slots = kNodeSlots, vm_slots = kVmSlots, disk_slots = kDiskSlots;
  uint32_t config_copy_blocks = kConfigCopyBlocks;

  static Result<Geometry> for_size(uint64_t volume_size);
  Status validate() const;
  uint64_t node_lease(uint32_t host_id) const { return node_leases + uint64_t{host_id - 1} * kBlockSize; }
  uint64_t vm_lease(uint32_t slot) const { return vm_leases + uint64_t{slot} * kBlockSize; }
  uint64_t disk_record(uint32_t slot) const { return disk_table + uint64_t{slot} * kBlockSize; }
  uint64_t config_copy(unsigned copy) const { return config + uint64_t{copy} * config_copy_blocks * kBlockSize; }
};

struct Superblock {
  Uuid uuid{};
  std::string cluster;
  Geometry geo;
  LeaseTimings timings;
  int64_t created_unix_ms = 0;
  std::string created_by;

  // `offset`: 0, or kBackupSuperOffset for the second copy.
  void encode(Block& b, uint64_t offset = 0) const;
  // Checks the record and the geometry; `what` names the device in messages.
  static Result<Superblock> decode(const Block& b, const std::string& what, uint64_t offset = 0);
};

// A record's index in its header: its block number on the volume.
inline uint32_t block_index(uint64_t offset) { return static_cast<uint32_t>(offset / kBlockSize); }

// Cluster, disk and owner names: 1..63 of [A-Za-z0-9._-], not starting with '-' or '.'.
Status validate_name(const std::string& what, const std::string& name);

}  // namespace minihv::blockdev
