// blockdev/disk_record.h — the records of the disk table and of the cluster configuration area.
#pragma once

#include "blockdev/device.h"
#include "blockdev/record.h"

namespace minihv::blockdev {

struct DiskEntry;

// A disk-table record: `entry` nullptr = a free slot.
void encode_disk_record(const DiskEntry* entry, Block& b, uint64_t offset, const Uuid& uuid);
// The entry a record holds, or false for a free slot. A flag that is neither free nor in use
// (disk_record_flag_valid() tells) still decodes: the record is invalid, but its extent is kept
// from reuse like any untrusted record's.
bool decode_disk_record(const Block& b, uint32_t slot, DiskEntry& out);
bool disk_record_flag_valid(const Block& b);

// The header block of one configuration copy; the JSON follows it in the copy's next blocks.
struct ConfigHeader {
  uint64_t generation = 0;  // 0: never written
  uint64_t length = 0;      // bytes of JSON
  uint64_t payload_hash = 0;
};
void encode_config_header(const ConfigHeader& h, Block& b, uint64_t offset, const Uuid& uuid);
ConfigHeader decode_config_header(const Block& b);

}  // namespace minihv::blockdev
