// A volume no corrupt record can bend: records whose checksum holds but whose fields break the
// format's rules (an extent past the end or over another, a flag, state or name no minihv writes)
// are refused with the record named, and the superblock survives damage to block 0 through its copy.
#include <gtest/gtest.h>

#include <cstring>

#include "blockdev/disk_record.h"
#include "blockdev/lease_record.h"
#include "tests/unit/blockdev_test_util.h"

namespace minihv::blockdev {
namespace {

using testing::MemVolume;

constexpr uint64_t kMiB = 1ull << 20;

// Writes `e` into its disk-table slot as a well-sealed record: what a bug or a forger could leave.
void forge_disk(MemVolume& m, const DiskEntry& e) {
  Block b;
  encode_disk_record(&e, b, m.vol->geometry().disk_record(e.slot), m.uuid());
  std::memcpy(m.dev->raw(m.vol->geometry().disk_record(e.slot)), b.bytes, kBlockSize);
}

// Sets a u32 field of the record at `offset` and seals it again.
void forge_u32(MemVolume& m, uint64_t offset, RecordKind kind, size_t field, uint32_t value) {
  Block b;
  std::memcpy(b.bytes, m.dev->raw(offset), kBlockSize);
  RecordView(b).put_u32(field, value);
  seal_record(b, kind, block_index(offset), m.uuid());
  std::memcpy(m.dev->raw(offset), b.bytes, kBlockSize);
}

DiskEntry make_disk(MemVolume& m, const std::string& name) {
  auto d = m.vol->create_disk(name, kMiB, "t");
  EXPECT_TRUE(d) << d.message();
  return d ? *d : DiskEntry{};
}

void expect_refused(MemVolume& m, const DiskEntry& e, const std::string& why) {
  auto table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  const DiskSlot& s = (*table)[e.slot];
  EXPECT_EQ(s.check, RecordCheck::kInvalid) << s.problem;
  EXPECT_FALSE(s.disk);
  EXPECT_NE(s.problem.find(why), std::string::npos) << s.problem;
  auto found = m.vol->find_disk(e.name);
  ASSERT_FALSE(found) << "an untrusted record must not attach";
  EXPECT_NE(found.message().find("slot " + std::to_string(e.slot)), std::string::npos) << found.message();
  EXPECT_NE(found.message().find(why), std::string::npos) << found.message();
  auto j = m.vol->inspect();
  ASSERT_TRUE(j);
  ASSERT_TRUE(j->contains("damaged_disk_records")) << j->dump();
}

TEST(BlockdevRecords, AnExtentPastTheEndIsRefusedEvenWhereTheSizeCheckWouldWrap) {
  MemVolume m;
  DiskEntry e = make_disk(m, "far");
  e.offset = m.vol->geometry().volume_size + 64 * kMiB;  // volume_size - offset would underflow
  forge_disk(m, e);
  expect_refused(m, e, "past the end of the volume");
  DiskEntry tail = make_disk(m, "tail");
  tail.size = m.vol->geometry().volume_size;  // starts inside, ends far outside
  forge_disk(m, tail);
  expect_refused(m, tail, "past the end of the volume");
}

TEST(BlockdevRecords, OverlappingExtentsAreBothRefusedAndNeverHandedOutAgain) {
  MemVolume m;
  const DiskEntry a = make_disk(m, "a");
  DiskEntry b = make_disk(m, "b");
  b.offset = a.offset;
  forge_disk(m, b);
  expect_refused(m, a, "overlaps disk-table slot " + std::to_string(b.slot) + " ('b')");
  expect_refused(m, b, "overlaps disk-table slot " + std::to_string(a.slot) + " ('a')");
  // A new disk goes around both claims: neither record's bytes may be someone else's data.
  auto c = m.vol->create_disk("c", kMiB, "t");
  ASSERT_TRUE(c) << c.message();
  EXPECT_GE(c->offset, a.offset + a.size);
}

TEST(BlockdevRecords, TwoRecordsWithOneNameAreBothRefused) {
  MemVolume m;
  const DiskEntry a = make_disk(m, "web");
  DiskEntry twin = make_disk(m, "db");
  twin.name = "web";
  forge_disk(m, twin);
  auto table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  EXPECT_EQ((*table)[a.slot].check, RecordCheck::kInvalid);
  EXPECT_NE((*table)[a.slot].problem.find("same name as disk-table slot " + std::to_string(twin.slot)),
            std::string::npos)
      << (*table)[a.slot].problem;
  EXPECT_FALSE(m.vol->find_disk("web"));
  EXPECT_FALSE(m.vol->create_disk("web", kMiB, "t")) << "the name is still claimed";
}

TEST(BlockdevRecords, AMisalignedOrMetadataExtentIsRefused) {
  MemVolume m;
  DiskEntry e = make_disk(m, "odd");
  e.offset += 4096;
  forge_disk(m, e);
  expect_refused(m, e, "not 1 MiB aligned");
  DiskEntry meta = make_disk(m, "meta");
  meta.offset = 0;  // over the superblock and every lease
  forge_disk(m, meta);
  expect_refused(m, meta, "inside the metadata");
}

TEST(BlockdevRecords, ABadNameOrInUseFlagIsRefused) {
  MemVolume m;
  DiskEntry e = make_disk(m, "ok");
  e.name = "two words";
  forge_disk(m, e);
  auto table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  EXPECT_EQ((*table)[e.slot].check, RecordCheck::kInvalid);
  EXPECT_NE((*table)[e.slot].problem.find("only letters"), std::string::npos) << (*table)[e.slot].problem;
  e.name = "\x1b[2Jwipe";  // a terminal escape must never reach `inspect`'s output
  forge_disk(m, e);
  table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  EXPECT_EQ((*table)[e.slot].problem, "its disk name is not printable text");
  const DiskEntry flag = make_disk(m, "flag");
  make_disk(m, "after");  // so that flag's extent is a hole a first fit would take
  forge_u32(m, m.vol->geometry().disk_record(flag.slot), RecordKind::kDisk, 32, 7);
  table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  EXPECT_EQ((*table)[flag.slot].check, RecordCheck::kInvalid);
  EXPECT_NE((*table)[flag.slot].problem.find("in-use flag"), std::string::npos);
  // Its extent is not free: a new disk lands elsewhere, as beside any other untrusted record.
  auto next = m.vol->create_disk("next", flag.size, "t");
  ASSERT_TRUE(next) << next.message();
  EXPECT_FALSE(next->offset < flag.offset + flag.size && flag.offset < next->offset + next->size)
      << "the new disk took the bytes of a record with a bad flag";
}

TEST(BlockdevRecords, ALeaseInAStateNoMinihvWritesIsDamagedNotFree) {
  MemVolume m;
  const DiskEntry d = make_disk(m, "d");
  const LeaseSlot slot = m.vol->disk_slot(d);
  forge_u32(m, slot.offset, RecordKind::kLease, 32, 5);
  auto r = m.vol->read_lease(slot);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->check, RecordCheck::kInvalid);
  EXPECT_FALSE(r->ok()) << "an invalid lease is held by someone unknown, never free";
  auto j = m.vol->inspect();
  ASSERT_TRUE(j);
  bool shown = false;
  for (const auto& l : (*j)["leases"]) shown = shown || (l["state"] == "damaged" && l["record"] == "invalid (breaks the format's rules)");
  EXPECT_TRUE(shown) << j->dump();
}

TEST(BlockdevRecords, ADamagedSuperblockIsReadFromItsCopy) {
  MemVolume m;
  const DiskEntry d = make_disk(m, "kept");
  std::memset(m.dev->raw(0), 0xee, 512);  // block 0 overwritten
  auto v = Volume::open_device(m.dev, m.clock);
  ASSERT_TRUE(v) << v.message();
  EXPECT_EQ((*v)->super().uuid, m.uuid());
  EXPECT_NE((*v)->super_note().find("using the copy at block 1090"), std::string::npos) << (*v)->super_note();
  auto found = (*v)->find_disk("kept");
  ASSERT_TRUE(found) << found.message();
  EXPECT_EQ(found->offset, d.offset);
  auto j = (*v)->inspect();
  ASSERT_TRUE(j);
  EXPECT_NE((*j)["superblock"]["block_0"], "ok");
  EXPECT_EQ((*j)["superblock"]["copy"], "ok");
}

TEST(BlockdevRecords, FormatWritesBothSuperblocksAndACopyThatDiffersIsShown) {
  MemVolume m;
  auto j = m.vol->inspect();
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["superblock"]["block_0"], "ok");
  EXPECT_EQ((*j)["superblock"]["copy"], "ok");
  std::memset(m.dev->raw(kBackupSuperOffset), 0, kBlockSize);
  j = m.vol->inspect();
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["superblock"]["copy"], "blank");
}

TEST(BlockdevRecords, ASuperblockWithAForgedClusterNameIsRefused) {
  MemVolume m;
  Block b;
  std::memcpy(b.bytes, m.dev->raw(0), kBlockSize);
  RecordView(b).put_str(136, "lab\n\x1b[31m");
  seal_record(b, RecordKind::kSuper, 0, m.uuid());
  std::memcpy(m.dev->raw(0), b.bytes, kBlockSize);
  std::memcpy(m.dev->raw(kBackupSuperOffset), b.bytes, kBlockSize);
  auto v = Volume::open_device(m.dev, m.clock);
  ASSERT_FALSE(v);
  EXPECT_NE(v.message().find("cluster name"), std::string::npos) << v.message();
}

}  // namespace
}  // namespace minihv::blockdev
