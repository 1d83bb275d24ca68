// The volume: format rules, the disk table, the configuration area, damaged records, and the
// real file device (O_DIRECT + io_uring) on a temporary file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "blockdev/disk_attach.h"
#include "blockdev/disk_record.h"
#include "blockdev/file_device.h"
#include "tests/unit/blockdev_test_util.h"

namespace minihv::blockdev {
namespace {

using testing::MemVolume;
using namespace std::chrono_literals;

TEST(BlockdevVolume, FormatWritesAnOpenableVolume) {
  MemVolume m;
  ASSERT_TRUE(m.vol);
  EXPECT_EQ(m.vol->super().cluster, "lab");
  EXPECT_EQ(m.vol->super().geo.volume_size, testing::kTestVolumeBytes);
  auto disks = m.vol->list_disks();
  ASSERT_TRUE(disks);
  EXPECT_TRUE(disks->empty());
  auto j = m.vol->inspect();
  ASSERT_TRUE(j) << j.message();
  EXPECT_EQ((*j)["cluster"], "lab");
  EXPECT_TRUE((*j)["leases"].empty()) << j->dump();
}

TEST(BlockdevVolume, FormatNeverOverwritesAVolumeWithoutForce) {
  MemVolume m;
  FormatOptions o;
  o.cluster = "other";
  Status s = Volume::format_device(*m.dev, o, m.clock);
  ASSERT_FALSE(s);
  EXPECT_TRUE(s.is_invalid_input());
  EXPECT_NE(s.message().find("already a minihv volume of cluster 'lab'"), std::string::npos) << s.message();
  o.force = true;
  ASSERT_TRUE(Volume::format_device(*m.dev, o, m.clock));
  auto v = Volume::open_device(m.dev, m.clock);
  ASSERT_TRUE(v);
  EXPECT_EQ((*v)->super().cluster, "other");
  EXPECT_NE((*v)->super().uuid, m.uuid()) << "a new volume gets a new uuid";
}

TEST(BlockdevVolume, FormatRefusesNonEmptyDevice) {
  ManualClock clock;
  MemDevice dev(16ull << 20);
  dev.raw(0)[100] = 1;
  FormatOptions o;
  o.cluster = "lab";
  Status s = Volume::format_device(dev, o, clock);
  EXPECT_TRUE(s.is_invalid_input());
  EXPECT_NE(s.message().find("not empty"), std::string::npos) << s.message();
}

TEST(BlockdevVolume, DisksGetDisjointAlignedExtents) {
  MemVolume m;
  auto a = m.vol->create_disk("a", 3 << 20, "t");
  auto b = m.vol->create_disk("b", 1, "t");
  auto c = m.vol->create_disk("c", 5 << 20, "t");
  ASSERT_TRUE(a && b && c) << a.message() << b.message() << c.message();
  EXPECT_EQ(b->size, kExtentAlign) << "sizes round up to 1 MiB";
  EXPECT_GE(a->offset, m.vol->geometry().data_start);
  EXPECT_LE(a->offset + a->size, b->offset);
  EXPECT_LE(b->offset + b->size, c->offset);
  EXPECT_TRUE(m.vol->create_disk("a", 1 << 20, "t").status().is_invalid_input()) << "duplicate name";
  EXPECT_TRUE(m.vol->create_disk("bad:name", 1 << 20, "t").status().is_invalid_input());
  EXPECT_TRUE(m.vol->create_disk("huge", 1ull << 40, "t").status().is_invalid_input());
  // Remove the middle one: its hole is reused first.
  ASSERT_TRUE(m.vol->remove_disk("b", "t"));
  auto d = m.vol->create_disk("d", 1 << 20, "t");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->offset, b->offset);
  auto list = m.vol->list_disks();
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 3u);
  EXPECT_TRUE(m.vol->find_disk("b").status().is_invalid_input());
}

TEST(BlockdevVolume, NewDiskIsZeroed) {
  MemVolume m;
  auto a = m.vol->create_disk("a", 1 << 20, "t");
  ASSERT_TRUE(a);
  std::memset(m.dev->raw(a->offset), 0xAB, 4096);
  ASSERT_TRUE(m.vol->remove_disk("a", "t"));
  auto b = m.vol->create_disk("b", 1 << 20, "t");
  ASSERT_TRUE(b);
  ASSERT_EQ(b->offset, a->offset);
  EXPECT_EQ(m.dev->raw(b->offset)[0], 0) << "a new disk must not show a removed disk's data";
}

// The holder renews on every sleep of the watcher (the manual clock moves only then).
struct RenewOnSleepClock : Clock {
  ManualClock& base;
  Lease* l = nullptr;
  explicit RenewOnSleepClock(ManualClock& b) : base(b) {}
  Nanos now() const override { return base.now(); }
  int64_t wall_unix_ms() const override { return base.wall_unix_ms(); }
  void sleep_for(Nanos d) override {
    base.advance(d);
    if (l) (void)l->renew();
  }
};

TEST(BlockdevVolume, DiskInUseCannotBeRemoved) {
  MemVolume m;
  auto d = m.vol->create_disk("web", 1 << 20, "t");
  ASSERT_TRUE(d);
  auto lease = m.vol->acquire(m.vol->disk_slot(*d), "vm-web");
  ASSERT_TRUE(lease);
  // The holder renews while `disk rm` watches (from the watcher's sleeps: see RenewOnSleepClock).
  RenewOnSleepClock clock(m.clock);
  clock.l = lease->get();
  auto vol2 = Volume::open_device(m.dev, clock);
  ASSERT_TRUE(vol2);
  Status s = (*vol2)->remove_disk("web", "admin-cli");
  ASSERT_FALSE(s);
  EXPECT_TRUE(s.is_invalid_input());
  EXPECT_NE(s.message().find("vm-web"), std::string::npos) << s.message();
  EXPECT_TRUE(m.vol->find_disk("web"));
  clock.l = nullptr;
}

// Issue 13: format --force wiped a volume whose disk lease a VM had renewed 2 ms earlier.
TEST(BlockdevVolume, ForcedFormatIsRefusedWhileALeaseIsRenewed) {
  MemVolume m;
  auto d = m.vol->create_disk("web", 1 << 20, "t");
  ASSERT_TRUE(d);
  auto lease = m.vol->acquire(m.vol->disk_slot(*d), "vm-web");
  ASSERT_TRUE(lease);
  RenewOnSleepClock clock(m.clock);
  clock.l = lease->get();
  FormatOptions o;
  o.cluster = "other";
  o.force = true;
  int asked = 0;
  o.confirm = [&] {
    ++asked;
    return Status::ok();
  };
  Status s = Volume::format_device(*m.dev, o, clock);
  ASSERT_FALSE(s);
  EXPECT_FALSE(s.is_invalid_input()) << "a live holder is not bad input: exit 1";
  EXPECT_NE(s.message().find("disk web held by vm-web"), std::string::npos) << s.message();
  EXPECT_EQ(asked, 0) << "nobody is asked to destroy what is in use";
  EXPECT_TRUE(m.vol->find_disk("web")) << "the volume is untouched";
  clock.l = nullptr;
}

// A volume whose block 0 is damaged still opens from its copy, so nodes may run on it: format
// treats it as a volume — refused without --force, and with --force while a lease on it is live.
TEST(BlockdevVolume, FormatTreatsAVolumeWithADamagedBlockZeroAsAVolume) {
  MemVolume m;
  auto d = m.vol->create_disk("web", 1 << 20, "t");
  ASSERT_TRUE(d);
  auto lease = m.vol->acquire(m.vol->disk_slot(*d), "vm-web");
  ASSERT_TRUE(lease);
  std::memset(m.dev->raw(0), 0, kBlockSize);
  FormatOptions o;
  o.cluster = "other";
  Status s = Volume::format_device(*m.dev, o, m.clock);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("already a minihv volume of cluster 'lab'"), std::string::npos) << s.message();
  RenewOnSleepClock clock(m.clock);
  clock.l = lease->get();
  o.force = true;
  s = Volume::format_device(*m.dev, o, clock);
  clock.l = nullptr;
  ASSERT_FALSE(s) << "formatted over a live lease";
  EXPECT_NE(s.message().find("disk web held by vm-web"), std::string::npos) << s.message();
}

// A lease nobody renews any more (its holder died) is stale after the dead timeout: no obstacle.
TEST(BlockdevVolume, ForcedFormatRunsOverAStaleLeaseAfterConfirming) {
  MemVolume m;
  auto d = m.vol->create_disk("web", 1 << 20, "t");
  ASSERT_TRUE(d);
  auto lease = m.vol->acquire(m.vol->disk_slot(*d), "vm-web");
  ASSERT_TRUE(lease);
  FormatOptions o;
  o.cluster = "other";
  o.force = true;
  o.confirm = [] { return Status::error("not confirmed"); };
  EXPECT_EQ(Volume::format_device(*m.dev, o, m.clock).message(), "not confirmed");
  EXPECT_TRUE(m.vol->find_disk("web")) << "a refused confirmation changes nothing";
  int asked = 0;
  o.confirm = [&] {
    ++asked;
    return Status::ok();
  };
  ASSERT_TRUE(Volume::format_device(*m.dev, o, m.clock));
  EXPECT_EQ(asked, 1);
  auto v = Volume::open_device(m.dev, m.clock);
  ASSERT_TRUE(v);
  EXPECT_EQ((*v)->super().cluster, "other");
}

TEST(BlockdevVolume, DamagedDiskRecordIsReportedNeverUsed) {
  MemVolume m;
  auto a = m.vol->create_disk("a", 1 << 20, "t");
  ASSERT_TRUE(a);
  m.dev->raw(m.vol->geometry().disk_record(a->slot))[70] ^= 0xff;  // inside the name
  auto table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  EXPECT_EQ((*table)[a->slot].check, RecordCheck::kTorn);
  EXPECT_FALSE((*table)[a->slot].disk);
  EXPECT_FALSE(m.vol->find_disk("a"));
  auto b = m.vol->create_disk("b", 1 << 20, "t");
  ASSERT_TRUE(b);
  EXPECT_NE(b->slot, a->slot) << "a damaged slot is not reused";
  auto j = m.vol->inspect();
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["damaged_disk_records"].size(), 1u) << j->dump();
}

TEST(BlockdevVolume, RecordOfAnotherVolumeIsRejected) {
  MemVolume m, other;
  auto d = other.vol->create_disk("intruder", 1 << 20, "t");
  ASSERT_TRUE(d);
  // Copy the other volume's disk record into the same slot of ours.
  const uint64_t off = m.vol->geometry().disk_record(d->slot);
  std::memcpy(m.dev->raw(off), other.dev->raw(off), kBlockSize);
  auto table = m.vol->read_disk_table();
  ASSERT_TRUE(table);
  EXPECT_EQ((*table)[d->slot].check, RecordCheck::kForeign);
  EXPECT_FALSE(m.vol->find_disk("intruder"));
}

TEST(BlockdevVolume, TornSuperblockIsNotTrusted) {
  MemVolume m;
  m.dev->raw(0)[150] ^= 1;
  m.dev->raw(kBackupSuperOffset)[150] ^= 1;  // and its copy (alone, block 0 is recovered from it)
  auto v = Volume::open_device(m.dev, m.clock);
  ASSERT_FALSE(v);
  EXPECT_NE(v.message().find("torn"), std::string::npos) << v.message();
}

TEST(BlockdevVolume, ConfigSurvivesATornWrite) {
  MemVolume m;
  auto admin = m.vol->acquire(m.vol->admin_slot(), "t");
  ASSERT_TRUE(admin);
  auto empty = m.vol->read_config();
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->generation, 0u);
  ASSERT_TRUE(m.vol->write_config({{"nodes", 1}}, **admin));
  ASSERT_TRUE(m.vol->write_config({{"nodes", 2}}, **admin));
  auto c = m.vol->read_config();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->generation, 2u);
  EXPECT_EQ(c->doc["nodes"], 2);
  // The third write tears: the payload lands half, the header never does.
  m.dev->tear_next_write(3);
  EXPECT_FALSE(m.vol->write_config({{"nodes", 3}, {"pad", std::string(9000, 'x')}}, **admin));
  c = m.vol->read_config();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->generation, 2u);
  EXPECT_EQ(c->doc["nodes"], 2);
  ASSERT_TRUE(m.vol->write_config({{"nodes", 4}}, **admin));
  EXPECT_EQ(m.vol->read_config()->doc["nodes"], 4);
  // Without the admin lease, no write.
  auto other = m.vol->acquire(*m.vol->node_slot(1), "t");
  ASSERT_TRUE(other);
  EXPECT_FALSE(m.vol->write_config({{"nodes", 5}}, **other));
}

TEST(BlockdevVolume, InspectShowsHoldersAndSince) {
  MemVolume m;
  auto d = m.vol->create_disk("web", 1 << 20, "t");
  ASSERT_TRUE(d);
  auto lease = m.vol->acquire(m.vol->disk_slot(*d), "hostA/pid 42");
  ASSERT_TRUE(lease);
  auto j = m.vol->inspect();
  ASSERT_TRUE(j);
  const auto& dj = (*j)["disks"][0];
  EXPECT_EQ(dj["name"], "web");
  EXPECT_EQ(dj["lease"]["state"], "held");
  EXPECT_EQ(dj["lease"]["owner"], "hostA/pid 42");
  EXPECT_TRUE(dj["lease"].contains("acquired_unix_ms"));
  // The admin lease was used (and released) by create.
  bool admin_seen = false;
  for (const auto& l : (*j)["leases"])
    if (l["resource"] == "admin") admin_seen = l["state"] == "free" && l["last_owner"] == "t";
  EXPECT_TRUE(admin_seen) << j->dump(2);
}

// --- the real device ---------------------------------------------------------------------------

struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/minihv-blockdev-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd >= 0) close(fd);
    path = tmpl;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

TEST(BlockdevFile, FormatOpenAndLeaseOnARealFile) {
  TempFile f;
  FormatOptions o;
  o.cluster = "lab";
  o.size = 32ull << 20;
  ASSERT_TRUE(Volume::format(f.path, o)) << "an empty file may be formatted without --force";
  EXPECT_TRUE(Volume::looks_like_volume(f.path));
  Status again = Volume::format(f.path, o);
  EXPECT_TRUE(again.is_invalid_input());
  EXPECT_NE(again.message().find("already a minihv volume"), std::string::npos) << again.message();
  auto v = Volume::open(f.path, true);
  ASSERT_TRUE(v) << v.message();
  auto d = (*v)->create_disk("root", 4 << 20, "t");
  ASSERT_TRUE(d) << d.message();
  auto l = (*v)->acquire((*v)->disk_slot(*d), "me");
  ASSERT_TRUE(l) << l.message();
  EXPECT_TRUE((*l)->renew());
  // A second opener of the same file sees the lease at once (O_DIRECT: no page cache between).
  auto v2 = Volume::open(f.path, false);
  ASSERT_TRUE(v2);
  auto r = (*v2)->read_lease((*v2)->disk_slot(*d));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->held());
  EXPECT_EQ(r->rec.owner, "me");
}

// Issue 13: `volume format --size 1M` failed but left a 1 MiB file that the retry then refused.
TEST(BlockdevFile, AFailedFormatLeavesNoFileItCreatedAndNoChangeToOneItDidNot) {
  TempFile dir_entry;
  std::filesystem::remove(dir_entry.path);
  FormatOptions o;
  o.cluster = "lab";
  o.size = 1ull << 20;
  Status s = Volume::format(dir_entry.path, o);
  EXPECT_TRUE(s.is_invalid_input()) << s.message();
  EXPECT_FALSE(std::filesystem::exists(dir_entry.path)) << "the file it created is gone";
  o.size = 32ull << 20;
  EXPECT_TRUE(Volume::format(dir_entry.path, o)) << "so the retry works";
  TempFile mine;
  { std::ofstream(mine.path) << "precious data"; }
  o.size = 1ull << 20;
  o.force = true;
  EXPECT_TRUE(Volume::format(mine.path, o).is_invalid_input());
  EXPECT_EQ(std::filesystem::file_size(mine.path), 13u) << "a file it did not create keeps its size";
}

TEST(BlockdevFile, FormatRefusesANonEmptyFile) {
  TempFile f;
  { std::ofstream(f.path) << "precious data"; }
  FormatOptions o;
  o.cluster = "lab";
  o.size = 32ull << 20;
  Status s = Volume::format(f.path, o);
  EXPECT_TRUE(s.is_invalid_input());
  EXPECT_NE(s.message().find("--force"), std::string::npos) << s.message();
  o.force = true;
  EXPECT_TRUE(Volume::format(f.path, o));
}

TEST(BlockdevFile, OpenRejectsAPlainFile) {
  TempFile f;
  { std::ofstream(f.path) << std::string(1 << 20, 'x'); }
  auto v = Volume::open(f.path, false);
  ASSERT_FALSE(v);
  EXPECT_TRUE(v.status().is_invalid_input());
  EXPECT_FALSE(Volume::looks_like_volume(f.path));
}

TEST(BlockdevFile, DeviceRefusesIoPastTheEnd) {
  TempFile f;
  ASSERT_EQ(truncate(f.path.c_str(), 1 << 20), 0);
  auto dev = FileDevice::open(f.path, FileDevice::Mode::kReadWrite);
  ASSERT_TRUE(dev);
  Block b;
  EXPECT_TRUE((*dev)->write(0, b.span()));
  EXPECT_FALSE((*dev)->write(1 << 20, b.span()));
  EXPECT_FALSE((*dev)->read(100, b.span())) << "unaligned";
}

TEST(BlockdevFile, VolumeDiskSpecNeedsAVolumeOnTheLeft) {
  TempFile vol, plain;
  FormatOptions o;
  o.cluster = "lab";
  o.size = 32ull << 20;
  o.force = true;
  ASSERT_TRUE(Volume::format(vol.path, o));
  auto spec = parse_volume_disk(vol.path + ":web");
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->volume, vol.path);
  EXPECT_EQ(spec->disk, "web");
  EXPECT_FALSE(parse_volume_disk(plain.path)) << "a plain image";
  EXPECT_FALSE(parse_volume_disk(plain.path + ":web")) << "left side is not a volume";
  EXPECT_FALSE(parse_volume_disk(vol.path + ":")) << "no disk name";
  EXPECT_FALSE(parse_volume_disk("/nonexistent:web"));
}

TEST(BlockdevFile, AttachRefusesASecondHolderAndReleasesOnDetach) {
  TempFile vol;
  FormatOptions o;
  o.cluster = "lab";
  o.size = 32ull << 20;
  o.force = true;
  ASSERT_TRUE(Volume::format(vol.path, o));
  {
    auto v = Volume::open(vol.path, true);
    ASSERT_TRUE(v);
    ASSERT_TRUE((*v)->create_disk("web", 1 << 20, "t"));
  }
  const VolumeDiskSpec spec{vol.path, "web"};
  auto first = VolumeDisk::attach(spec, "vm1", nullptr);
  ASSERT_TRUE(first) << first.message();
  EXPECT_TRUE((*first)->write_gate()());
  auto fd = (*first)->open_data_fd();
  ASSERT_TRUE(fd) << fd.message();
  auto second = VolumeDisk::attach(spec, "vm2", nullptr);
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.status().is_invalid_input());
  EXPECT_NE(second.message().find("vm1"), std::string::npos) << second.message();
  auto gate = (*first)->write_gate();
  ASSERT_TRUE((*first)->release());
  EXPECT_FALSE(gate()) << "no write after release";
  auto third = VolumeDisk::attach(spec, "vm3", nullptr);
  EXPECT_TRUE(third) << third.message();
  EXPECT_FALSE(VolumeDisk::attach({vol.path, "nope"}, "vm4", nullptr).status().is_ok());
}

}  // namespace
}  // namespace minihv::blockdev
