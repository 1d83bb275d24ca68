#include "blockdev/disk_record.h"

#include "blockdev/layout.h"
#include "blockdev/volume.h"

namespace minihv::blockdev {

namespace {
constexpr size_t kInUse = 32, kOffset = 40, kSize = 48, kCreated = 56, kName = 64;
constexpr size_t kGeneration = 32, kLength = 40, kHash = 48;
}  // namespace

void encode_disk_record(const DiskEntry* e, Block& b, uint64_t offset, const Uuid& uuid) {
  b = Block{};
  RecordView v(b);
  v.put_u32(kInUse, e ? 1 : 0);
  if (e) {
    v.put_u64(kOffset, e->offset);
    v.put_u64(kSize, e->size);
    v.put_u64(kCreated, static_cast<uint64_t>(e->created_unix_ms));
    v.put_str(kName, e->name);
  }
  seal_record(b, RecordKind::kDisk, block_index(offset), uuid);
}

bool disk_record_flag_valid(const Block& b) {
  Block copy = b;
  return RecordView(copy).u32(kInUse) <= 1;
}

bool decode_disk_record(const Block& b, uint32_t slot, DiskEntry& out) {
  Block copy = b;
  RecordView v(copy);
  if (v.u32(kInUse) == 0) return false;
  out.slot = slot;
  out.offset = v.u64(kOffset);
  out.size = v.u64(kSize);
  out.created_unix_ms = static_cast<int64_t>(v.u64(kCreated));
  out.name = v.str(kName);
  return true;
}

void encode_config_header(const ConfigHeader& h, Block& b, uint64_t offset, const Uuid& uuid) {
  b = Block{};
  RecordView v(b);
  v.put_u64(kGeneration, h.generation);
  v.put_u64(kLength, h.length);
  v.put_u64(kHash, h.payload_hash);
  seal_record(b, RecordKind::kConfig, block_index(offset), uuid);
}

ConfigHeader decode_config_header(const Block& b) {
  Block copy = b;
  RecordView v(copy);
  return {v.u64(kGeneration), v.u64(kLength), v.u64(kHash)};
}

}  // namespace minihv::blockdev
