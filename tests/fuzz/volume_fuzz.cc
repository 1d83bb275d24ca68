// libFuzzer target for a whole shared volume as another node, another version, a bug or a forger
// may leave it: superblock and its copy, admin/node/VM leases, the configuration copies and the disk
// table. The input patches a freshly formatted volume (two disks, a configuration) block by block,
// optionally sealing a patched record again so it gets past the checksum; then every reader runs
// and a disk is created and removed. Nothing may crash, and whatever the volume lists as a disk must
// obey the format's rules: inside the data area, 1 MiB aligned, a valid name, no two overlapping.
//
// Input: patches of [u16 block][u16 offset][u8 length][u8 flags] + length bytes, little-endian.
// block is taken modulo the metadata blocks (through the superblock's copy); flags bit 0 seals the
// record again (header and checksum for the kind of record that block holds).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "blockdev/mem_device.h"
#include "blockdev/volume.h"

using namespace minihv;
using namespace minihv::blockdev;

namespace {

constexpr uint64_t kVolumeBytes = 8ull << 20;  // 5 MiB of metadata, room for a few 1 MiB disks
constexpr uint32_t kMetaBlocks = kBackupSuperOffset / kBlockSize + 1;
constexpr size_t kPatchHeader = 6;
constexpr uint8_t kReseal = 1;

struct Pristine {
  ManualClock clock;
  std::shared_ptr<MemDevice> dev = std::make_shared<MemDevice>(kVolumeBytes, "fuzzvol");
  std::vector<uint8_t> image;
  Uuid uuid{};
  Geometry geo;
};

const Pristine& pristine() {
  static Pristine* p = [] {
    auto* s = new Pristine;
    FormatOptions o;
    o.cluster = "fuzz";
    o.created_by = "fuzzer";
    if (!Volume::format_device(*s->dev, o, s->clock)) std::abort();
    auto v = Volume::open_device(s->dev, s->clock);
    if (!v) std::abort();
    if (!(*v)->create_disk("a", 1 << 20, "fuzzer") || !(*v)->create_disk("b", 1 << 20, "fuzzer")) std::abort();
    auto admin = (*v)->acquire((*v)->admin_slot(), "fuzzer");
    if (!admin || !(*v)->write_config({{"nodes", {{"n1", 1}}}}, **admin) || !(*admin)->release()) std::abort();
    s->uuid = (*v)->super().uuid;
    s->geo = (*v)->geometry();
    s->image.assign(s->dev->raw(0), s->dev->raw(0) + kVolumeBytes);
    return s;
  }();
  return *p;
}

// The kind of record a metadata block holds, to seal a patched one again; false for JSON blocks.
bool kind_of(const Geometry& g, uint64_t off, RecordKind& kind) {
  if (off == 0 || off == kBackupSuperOffset) kind = RecordKind::kSuper;
  else if (off < g.config) kind = RecordKind::kLease;
  else if (off == g.config_copy(0) || off == g.config_copy(1)) kind = RecordKind::kConfig;
  else if (off >= g.disk_table && off < g.disk_table + uint64_t{g.disk_slots} * kBlockSize) kind = RecordKind::kDisk;
  else return false;
  return true;
}

void apply_patches(MemDevice& dev, const Pristine& p, const uint8_t* data, size_t size) {
  while (size >= kPatchHeader) {
    const uint32_t block = (data[0] | data[1] << 8) % kMetaBlocks;
    const size_t at = (data[2] | data[3] << 8) % kBlockSize, len = data[4];
    const uint8_t flags = data[5];
    data += kPatchHeader;
    size -= kPatchHeader;
    const size_t n = std::min({len, size, kBlockSize - at});
    uint8_t* rec = dev.raw(uint64_t{block} * kBlockSize);
    std::memcpy(rec + at, data, n);
    data += n;
    size -= n;
    RecordKind kind;
    if ((flags & kReseal) && kind_of(p.geo, uint64_t{block} * kBlockSize, kind)) {
      Block b;
      std::memcpy(b.bytes, rec, kBlockSize);
      seal_record(b, kind, block, p.uuid);
      std::memcpy(rec, b.bytes, kBlockSize);
    }
  }
}

// What the volume lists as a disk obeys the format's rules, whatever the bytes were.
void check_disks(Volume& v) {
  auto disks = v.list_disks();
  if (!disks) return;
  const Geometry& g = v.geometry();
  for (size_t i = 0; i < disks->size(); ++i) {
    const DiskEntry& a = (*disks)[i];
    if (!validate_name("disk", a.name) || a.size == 0 || a.offset < g.data_start || a.offset % kExtentAlign ||
        a.offset >= g.volume_size || a.size > g.volume_size - a.offset)
      std::abort();
    for (size_t j = i + 1; j < disks->size(); ++j) {
      const DiskEntry& b = (*disks)[j];
      if (a.name == b.name || (a.offset < b.offset + b.size && b.offset < a.offset + a.size)) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Pristine& p = pristine();
  static auto dev = std::make_shared<MemDevice>(kVolumeBytes, "fuzzvol");  // reused: 8 MiB a run is slow
  ManualClock clock;
  std::memcpy(dev->raw(0), p.image.data(), p.image.size());
  apply_patches(*dev, p, data, size);
  auto v = Volume::open_device(dev, clock);
  if (!v) return 0;
  check_disks(**v);
  (void)(*v)->inspect();
  (void)(*v)->read_config();
  (void)(*v)->find_disk("a");
  if (auto d = (*v)->create_disk("z", 1 << 20, "fuzzer")) check_disks(**v);
  (void)(*v)->remove_disk("b", "fuzzer");
  check_disks(**v);
  return 0;
}
