// The on-disk records: checksums, uuids, slots, the superblock and the timing rules.
#include <gtest/gtest.h>

#include <cstring>

#include "blockdev/layout.h"
#include "blockdev/lease_record.h"
#include "blockdev/record.h"

namespace minihv::blockdev {
namespace {

Block sealed_lease(const Uuid& uuid, uint64_t offset) {
  LeaseRecord r;
  r.state = LeaseState::kHeld;
  r.generation = 7;
  r.nonce = 0x1234;
  r.counter = 99;
  r.owner = "hostA/pid 1";
  r.resource = "disk web";
  Block b;
  r.encode(b, offset, uuid);
  return b;
}

TEST(BlockdevRecord, LeaseRoundTrips) {
  const Uuid u = random_uuid();
  Block b = sealed_lease(u, 5 * kBlockSize);
  ASSERT_EQ(check_record(b, RecordKind::kLease, 5, u), RecordCheck::kOk);
  LeaseRecord r = LeaseRecord::decode(b);
  EXPECT_EQ(r.state, LeaseState::kHeld);
  EXPECT_EQ(r.generation, 7u);
  EXPECT_EQ(r.nonce, 0x1234u);
  EXPECT_EQ(r.counter, 99u);
  EXPECT_EQ(r.owner, "hostA/pid 1");
  EXPECT_EQ(r.resource, "disk web");
}

TEST(BlockdevRecord, EveryFlippedByteIsCaught) {
  const Uuid u = random_uuid();
  const Block good = sealed_lease(u, 5 * kBlockSize);
  for (size_t i = 0; i < kBlockSize; i += 97) {
    Block b = good;
    b.bytes[i] ^= 0x40;
    EXPECT_NE(check_record(b, RecordKind::kLease, 5, u), RecordCheck::kOk) << "byte " << i;
  }
}

TEST(BlockdevRecord, TornWriteIsDetected) {
  const Uuid u = random_uuid();
  Block old_rec = sealed_lease(u, 5 * kBlockSize);
  LeaseRecord r = LeaseRecord::decode(old_rec);
  r.counter = 100;
  r.owner = "hostB/pid 2";
  Block new_rec;
  r.encode(new_rec, 5 * kBlockSize, u);
  // The first 512-byte sector of the new record landed, the rest is the old one.
  Block torn = old_rec;
  std::memcpy(torn.bytes, new_rec.bytes, 512);
  EXPECT_EQ(check_record(torn, RecordKind::kLease, 5, u), RecordCheck::kTorn);
}

TEST(BlockdevRecord, ForeignAndMisplacedAreNotTrusted) {
  const Uuid u = random_uuid(), other = random_uuid();
  Block b = sealed_lease(u, 5 * kBlockSize);
  EXPECT_EQ(check_record(b, RecordKind::kLease, 5, other), RecordCheck::kForeign);
  EXPECT_EQ(check_record(b, RecordKind::kLease, 6, u), RecordCheck::kMisplaced);
  EXPECT_EQ(check_record(b, RecordKind::kDisk, 5, u), RecordCheck::kForeign);
  EXPECT_EQ(check_record(Block{}, RecordKind::kLease, 5, u), RecordCheck::kBlank);
}

TEST(BlockdevRecord, SuperblockRoundTripsAndRejectsDamage) {
  Superblock sb;
  sb.uuid = random_uuid();
  sb.cluster = "lab";
  sb.geo = *Geometry::for_size(1ull << 30);
  sb.timings.renew = Millis(100);
  sb.timings.fail = Millis(500);
  sb.timings.dead = Millis(900);
  sb.timings.io_timeout = Millis(50);
  sb.created_by = "me";
  Block b;
  sb.encode(b);
  auto back = Superblock::decode(b, "vol");
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(back->uuid, sb.uuid);
  EXPECT_EQ(back->cluster, "lab");
  EXPECT_EQ(back->geo.data_start, sb.geo.data_start);
  EXPECT_EQ(back->timings.dead, Millis(900));
  b.bytes[200] ^= 1;
  auto bad = Superblock::decode(b, "vol");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("torn"), std::string::npos) << bad.message();
  auto blank = Superblock::decode(Block{}, "vol");
  ASSERT_FALSE(blank);
  EXPECT_TRUE(blank.status().is_invalid_input());
  EXPECT_NE(blank.message().find("not a minihv volume"), std::string::npos);
}

TEST(BlockdevRecord, GeometryIsOrderedAndAligned) {
  auto g = Geometry::for_size(256ull << 20);
  ASSERT_TRUE(g);
  EXPECT_LT(g->admin_lease, g->node_leases);
  EXPECT_EQ(g->vm_leases - g->node_leases, uint64_t{kNodeSlots} * kBlockSize);
  EXPECT_EQ(g->config - g->vm_leases, uint64_t{kVmSlots} * kBlockSize);
  EXPECT_EQ(g->disk_table - g->config, 2ull * kConfigCopyBlocks * kBlockSize);
  EXPECT_GE(g->data_start, g->disk_table + uint64_t{kDiskSlots} * kBlockSize);
  EXPECT_EQ(g->data_start % kExtentAlign, 0u);
  EXPECT_FALSE(Geometry::for_size(2ull << 20)) << "a 2 MiB volume has no room for data";
}

TEST(BlockdevRecord, TimingRules) {
  LeaseTimings t;
  EXPECT_TRUE(t.validate()) << t.validate().message();
  EXPECT_GT(t.dead, t.fail + t.io_timeout) << "defaults need a margin";
  LeaseTimings close = t;
  close.dead = t.fail + t.io_timeout;  // margin smaller than 2 x io-timeout
  EXPECT_TRUE(close.validate().is_invalid_input());
  LeaseTimings fast_fail = t;
  fast_fail.fail = t.renew;
  EXPECT_FALSE(fast_fail.validate());
}

TEST(BlockdevRecord, Names) {
  EXPECT_TRUE(validate_name("disk name", "web-1.root_disk"));
  EXPECT_TRUE(validate_name("disk name", "").is_invalid_input());
  EXPECT_FALSE(validate_name("disk name", "a:b"));
  EXPECT_FALSE(validate_name("disk name", "a/b"));
  EXPECT_FALSE(validate_name("disk name", "-x"));
  EXPECT_FALSE(validate_name("disk name", std::string(64, 'a')));
}

}  // namespace
}  // namespace minihv::blockdev
