// virtio-blk end to end: a test driver against the real transport, the real device and its
// io_uring thread, a real temp image file and real guest memory.
#include "vmm/devices/virtio_blk.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <numeric>
#include <string>
#include <thread>

#include "tests/unit/virtio_test_driver.h"
#include "vmm/devices/virtio_blk_worker.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

using namespace virtio;
using namespace virtio::blk;
using testing::CountingIrq;
using testing::TestLayout;
using testing::VirtioTestDriver;

constexpr uint64_t kDiskBytes = 1 << 20;  // 2048 sectors
constexpr uint64_t kSectors = kDiskBytes / kSectorSize;
constexpr uint64_t kRam = 16 * layout::kMiB;
constexpr uint64_t kWant = kFVersion1 | kRingFeatures | kFFlush | kFBlkSize | kFSegMax;

// A temp image file, removed at the end; byte i of the disk starts as (i * 7) & 0xff.
class TempImage {
public:
  explicit TempImage(uint64_t size) {
    char name[] = "/tmp/minihv-blk-XXXXXX";
    UniqueFd fd(mkstemp(name));
    path_ = name;
    std::vector<uint8_t> b(size);
    for (uint64_t i = 0; i < size; ++i) b[i] = static_cast<uint8_t>(i * 7);
    EXPECT_EQ(pwrite(fd.get(), b.data(), b.size(), 0), static_cast<ssize_t>(size));
  }
  ~TempImage() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  std::vector<uint8_t> read(uint64_t off, size_t n) const {
    std::vector<uint8_t> b(n);
    UniqueFd fd(open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(pread(fd.get(), b.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    return b;
  }

private:
  std::string path_;
};

class VirtioBlkTest : public ::testing::Test {
protected:
  void SetUp() override {
    auto m = GuestMemory::create(kRam);
    ASSERT_TRUE(m) << m.message();
    mem_ = std::move(*m);
  }
  // Builds backend + device + transport; `opts` as for --disk.
  void make(BlockBackend::FileOptions opts = {}) {
    auto b = BlockBackend::open_file(image_.path(), opts);
    ASSERT_TRUE(b) << b.message();
    make_from(std::move(*b));
  }
  void make_from(BlockBackend backend) {
    auto blk = VirtioBlk::create(std::move(backend), "minihv-test-serial");
    ASSERT_TRUE(blk) << blk.message();
    blk_ = blk->get();
    auto t = VirtioMmio::create(*mem_, irq_, std::move(*blk));
    ASSERT_TRUE(t) << t.message();
    mmio_ = std::move(*t);
    drv_ = std::make_unique<VirtioTestDriver>(*mmio_, *mem_);
  }
  void start(uint16_t qsize = 16) {
    make();
    ASSERT_TRUE(drv_->init(kWant, qsize));
  }
  void fill(uint64_t gpa, size_t n, uint8_t seed) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 13);
    ASSERT_TRUE(mem_->write(gpa, b.data(), n));
  }
  std::vector<uint8_t> guest(uint64_t gpa, size_t n) {
    std::vector<uint8_t> b(n);
    EXPECT_TRUE(mem_->read(gpa, b.data(), n));
    return b;
  }
  // After a hostile request the device must have answered IOERR or asked for a reset, and a
  // reset + re-initialisation must give a working disk again: the VMM survived.
  void expect_survives(const VirtioTestDriver::BlkDone& r) {
    if (r.completed) {
      EXPECT_EQ(r.status, kSIoErr);
    } else {
      EXPECT_TRUE(drv_->wait_status_bit(kStatusNeedsReset)) << "neither IOERR nor NEEDS_RESET";
      EXPECT_TRUE(drv_->rd(mmio::kInterruptStatus) & mmio::kIntConfigChange);
    }
    ASSERT_TRUE(drv_->init(kWant));
    fill(TestLayout::kData, 512, 3);
    auto w = drv_->blk(kTOut, 1, TestLayout::kData, 512, false);
    ASSERT_TRUE(w.completed);
    EXPECT_EQ(w.status, kSOk);
  }

  TempImage image_{kDiskBytes};
  std::unique_ptr<GuestMemory> mem_;
  CountingIrq irq_;
  VirtioBlk* blk_ = nullptr;
  std::unique_ptr<VirtioMmio> mmio_;
  std::unique_ptr<VirtioTestDriver> drv_;
};

// --- negotiation and config ---

TEST_F(VirtioBlkTest, OffersItsFeaturesAndGeometry) {
  make();
  EXPECT_EQ(drv_->rd(mmio::kDeviceId), kDeviceId);
  EXPECT_EQ(drv_->device_features(), kWant);
  uint64_t cap = 0;
  mmio_->bus_read(mmio::kConfig + kCfgCapacity, reinterpret_cast<uint8_t*>(&cap), 8);
  EXPECT_EQ(cap, kSectors);
  EXPECT_EQ(drv_->rd(mmio::kConfig + kCfgSegMax), VirtioBlk::kSegMax);
  EXPECT_EQ(drv_->rd(mmio::kConfig + kCfgBlkSize), 512u);
  EXPECT_EQ(drv_->rd(mmio::kConfig + 0x200), 0u);  // beyond the config: zero
  EXPECT_TRUE(drv_->init(kWant));
}

TEST_F(VirtioBlkTest, ReadOnlyDiskOffersRoAndRefusesWrites) {
  make({.read_only = true});
  EXPECT_EQ(drv_->device_features(), kWant | kFRo);
  ASSERT_TRUE(drv_->init(kWant | kFRo));
  auto w = drv_->blk(kTOut, 0, TestLayout::kData, 512, false);
  ASSERT_TRUE(w.completed);
  EXPECT_EQ(w.status, kSIoErr);
  EXPECT_EQ(image_.read(0, 1)[0], 0);  // untouched
  auto r = drv_->blk(kTIn, 0, TestLayout::kData, 512, true);
  EXPECT_EQ(r.status, kSOk);
}

TEST(VirtioBlkBackend, MissingFileNamesThePathAndTheReason) {
  auto b = BlockBackend::open_file("/nonexistent/disk.img", {});
  ASSERT_FALSE(b);
  EXPECT_NE(b.message().find("/nonexistent/disk.img"), std::string::npos) << b.message();
  EXPECT_NE(b.message().find("No such file"), std::string::npos) << b.message();
  auto d = BlockBackend::open_file("/tmp", {});
  EXPECT_FALSE(d);
}

TEST(VirtioBlkBackend, FileOffsetIsTheOneBoundsCheck) {
  TempImage img(4096);
  auto fd = UniqueFd(open(img.path().c_str(), O_RDWR | O_CLOEXEC));
  auto b = BlockBackend::from_extent({std::move(fd), 1024, 2048, false, 1, "extent"});
  ASSERT_TRUE(b) << b.message();
  EXPECT_EQ(b->capacity_sectors(), 4u);
  EXPECT_EQ(b->file_offset(0, 2048), 1024u);
  EXPECT_EQ(b->file_offset(3, 512), 1024u + 1536);
  EXPECT_FALSE(b->file_offset(3, 1024));
  EXPECT_FALSE(b->file_offset(5, 0));
  EXPECT_FALSE(b->file_offset(~uint64_t{0} / 512, 512));
  EXPECT_FALSE(b->file_offset(1, ~uint64_t{0}));
  EXPECT_FALSE(BlockBackend::from_extent({UniqueFd(dup(0)), 0, 1000, false, 1, "x"}));
  EXPECT_FALSE(BlockBackend::from_extent({UniqueFd(dup(0)), 512, 4096, false, 4096, "x"}));
}

// --- the data path ---

TEST_F(VirtioBlkTest, WriteThenReadBackASector) {
  start();
  fill(TestLayout::kData, 512, 42);
  const auto written = guest(TestLayout::kData, 512);
  auto w = drv_->blk(kTOut, 5, TestLayout::kData, 512, false);
  ASSERT_TRUE(w.completed);
  EXPECT_EQ(w.status, kSOk);
  EXPECT_EQ(w.used_len, 1u);
  EXPECT_EQ(image_.read(5 * 512, 512), written);  // on the file, not just in a cache of ours
  fill(TestLayout::kData + 0x1000, 512, 0);
  auto r = drv_->blk(kTIn, 5, TestLayout::kData + 0x1000, 512, true);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.status, kSOk);
  EXPECT_EQ(r.used_len, 513u);
  EXPECT_EQ(guest(TestLayout::kData + 0x1000, 512), written);
  EXPECT_GT(irq_.count.load(), 0);
  const auto st = blk_->stats();
  EXPECT_EQ(st.reads, 1u);
  EXPECT_EQ(st.writes, 1u);
  EXPECT_EQ(st.read_bytes, 512u);
  EXPECT_EQ(st.write_bytes, 512u);
  EXPECT_EQ(st.errors, 0u);
}

TEST_F(VirtioBlkTest, ReadIntoGuestMemoryMarksItDirty) {
  start();
  std::vector<uint64_t> bitmap(kRam / layout::kPageSize / 64, 0);
  mem_->take_device_dirty(0, bitmap);
  std::fill(bitmap.begin(), bitmap.end(), 0);
  const uint64_t data = TestLayout::kData + 0x10000;
  auto r = drv_->blk(kTIn, 0, data, 8192, true);
  ASSERT_EQ(r.status, kSOk);
  mem_->take_device_dirty(0, bitmap);
  for (uint64_t page : {data / 4096, data / 4096 + 1, TestLayout::kStatus / 4096, TestLayout::kUsed / 4096})
    EXPECT_TRUE(bitmap[page / 64] & (uint64_t{1} << (page % 64))) << "page " << page;
}

// Header, data split over several descriptors at odd places, status inside the last data
// descriptor's buffer: a device must not assume any framing (VIRTIO 1.x).
TEST_F(VirtioBlkTest, AnyDescriptorLayoutAndIndirectTables) {
  start();
  fill(TestLayout::kData, 1024, 9);
  const auto data = guest(TestLayout::kData, 1024);
  // OUT: header+first 100 data bytes in one buffer, the rest in another, through an indirect table.
  const uint64_t hdr = TestLayout::kData + 0x10000;
  uint8_t h[16] = {kTOut};
  const uint64_t sector = 100;
  std::memcpy(h + 8, &sector, 8);
  ASSERT_TRUE(mem_->write(hdr, h, 16));
  ASSERT_TRUE(mem_->write(hdr + 16, data.data(), 100));
  drv_->desc_at(TestLayout::kIndirect, 0, hdr, 116, kDescFNext, 1);
  drv_->desc_at(TestLayout::kIndirect, 1, TestLayout::kData + 100, 924, kDescFNext, 2);
  drv_->desc_at(TestLayout::kIndirect, 2, TestLayout::kStatus, 1, kDescFWrite);
  drv_->desc(0, TestLayout::kIndirect, 48, kDescFIndirect);
  drv_->push_avail(0);
  auto w = drv_->submit_and_wait(0);
  ASSERT_TRUE(w.completed);
  EXPECT_EQ(w.status, kSOk);
  EXPECT_EQ(image_.read(sector * 512, 1024), data);
  // IN: data in three buffers, the status byte is the last byte of the last one.
  const uint64_t in = TestLayout::kData + 0x20000;
  drv_->desc(1, hdr, 16, kDescFNext, 2);
  drv_->desc(2, in, 300, kDescFNext | kDescFWrite, 3);
  drv_->desc(3, in + 0x1000, 600, kDescFNext | kDescFWrite, 4);
  drv_->desc(4, in + 0x2000, 125, kDescFWrite);  // 124 data bytes + status
  h[0] = kTIn;
  ASSERT_TRUE(mem_->write(hdr, h, 16));
  ASSERT_TRUE(mem_->write_obj<uint8_t>(in + 0x2000 + 124, 0xff));
  drv_->push_avail(1);
  auto r = drv_->submit_and_wait(1);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(*mem_->read_obj<uint8_t>(in + 0x2000 + 124), kSOk);
  std::vector<uint8_t> got = guest(in, 300);
  auto b = guest(in + 0x1000, 600);
  got.insert(got.end(), b.begin(), b.end());
  b = guest(in + 0x2000, 124);
  got.insert(got.end(), b.begin(), b.end());
  EXPECT_EQ(got, data);
  EXPECT_EQ(r.used_len, 1025u);
}

TEST_F(VirtioBlkTest, ManyRequestsInFlight) {
  start(256);
  constexpr unsigned kReqs = 64;  // 3 descriptors each: 192 of 256
  std::vector<uint16_t> heads;
  for (unsigned i = 0; i < kReqs; ++i) {
    fill(TestLayout::kData + i * 4096ull, 4096, static_cast<uint8_t>(i));
    heads.push_back(drv_->blk_queue(kTOut, i * 8ull, TestLayout::kData + i * 4096ull, 4096, false));
  }
  drv_->kick();
  ASSERT_TRUE(drv_->wait_used(kReqs));
  for (uint16_t h : heads) EXPECT_EQ(drv_->blk_status_of(h), kSOk);
  drv_->seen_used() = kReqs;
  for (unsigned i = 0; i < kReqs; ++i)
    ASSERT_EQ(image_.read(i * 4096ull, 4096), guest(TestLayout::kData + i * 4096ull, 4096));
  // And read them back at once into another area.
  const uint64_t back = TestLayout::kData + 0x100000;
  heads.clear();
  for (unsigned i = 0; i < kReqs; ++i)
    heads.push_back(drv_->blk_queue(kTIn, i * 8ull, back + i * 4096ull, 4096, true));
  drv_->kick();
  ASSERT_TRUE(drv_->wait_used(2 * kReqs));
  for (uint16_t h : heads) EXPECT_EQ(drv_->blk_status_of(h), kSOk);
  EXPECT_EQ(guest(back, kReqs * 4096), guest(TestLayout::kData, kReqs * 4096));
  EXPECT_EQ(blk_->stats().writes, kReqs);
  EXPECT_EQ(blk_->stats().reads, kReqs);
}

TEST_F(VirtioBlkTest, FlushGetIdAndUnsupported) {
  start();
  auto f = drv_->blk(kTFlush, 0, 0, 0, false);
  ASSERT_TRUE(f.completed);
  EXPECT_EQ(f.status, kSOk);
  EXPECT_EQ(blk_->stats().flushes, 1u);
  auto id = drv_->blk(kTGetId, 0, TestLayout::kData, kIdBytes, true);
  ASSERT_TRUE(id.completed);
  EXPECT_EQ(id.status, kSOk);
  EXPECT_EQ(id.used_len, kIdBytes + 1);  // the whole 20-byte id, NUL-padded
  const auto s = guest(TestLayout::kData, 18);
  EXPECT_EQ(std::string(s.begin(), s.end()), "minihv-test-serial");
  auto u = drv_->blk(11 /* DISCARD: not offered */, 0, TestLayout::kData, 16, false);
  ASSERT_TRUE(u.completed);
  EXPECT_EQ(u.status, kSUnsupp);
}

TEST_F(VirtioBlkTest, OutOfRangeAndMisalignedRequestsFailWithIoErr) {
  start();
  struct Case {
    uint32_t type;
    uint64_t sector;
    uint32_t len;
  } cases[] = {
      {kTIn, kSectors, 512},           // first sector past the end
      {kTIn, kSectors - 1, 1024},      // runs over the end
      {kTOut, kSectors - 1, 1024},
      {kTIn, ~uint64_t{0}, 512},       // sector * 512 overflows
      {kTIn, ~uint64_t{0} / 512, 512},
      {kTIn, 0, 100},                  // not a whole sector
      {kTOut, 0, 513},
  };
  for (const Case& c : cases) {
    auto r = drv_->blk(c.type, c.sector, TestLayout::kData, c.len, c.type == kTIn);
    ASSERT_TRUE(r.completed);
    EXPECT_EQ(r.status, kSIoErr) << "type " << c.type << " sector " << c.sector << " len " << c.len;
  }
  EXPECT_EQ(blk_->stats().errors, std::size(cases));
  auto ok = drv_->blk(kTIn, kSectors - 1, TestLayout::kData, 512, true);  // the last sector is fine
  EXPECT_EQ(ok.status, kSOk);
}

TEST_F(VirtioBlkTest, ExtentBackendStaysInsideItsExtent) {
  UniqueFd fd(open(image_.path().c_str(), O_RDWR | O_CLOEXEC));
  auto b = BlockBackend::from_extent({std::move(fd), 4096, 8192, false, 1, "extent"});
  ASSERT_TRUE(b) << b.message();
  make_from(std::move(*b));
  ASSERT_TRUE(drv_->init(kWant));
  fill(TestLayout::kData, 512, 77);
  ASSERT_EQ(drv_->blk(kTOut, 0, TestLayout::kData, 512, false).status, kSOk);
  EXPECT_EQ(image_.read(4096, 512), guest(TestLayout::kData, 512));
  EXPECT_EQ(drv_->blk(kTOut, 16, TestLayout::kData, 512, false).status, kSIoErr);
  EXPECT_EQ(drv_->blk(kTIn, 15, TestLayout::kData, 1024, true).status, kSIoErr);
}

// O_DIRECT with guest buffers that are not aligned: the device bounces them.
TEST_F(VirtioBlkTest, DirectIoWithUnalignedGuestBuffersUsesBounceBuffers) {
  auto b = BlockBackend::open_file(image_.path(), {.direct = true});
  if (!b) GTEST_SKIP() << "O_DIRECT not available here: " << b.message();
  make_from(std::move(*b));
  ASSERT_TRUE(drv_->init(kWant));
  EXPECT_EQ(drv_->rd(mmio::kConfig + kCfgBlkSize), 4096u);
  const uint64_t odd = TestLayout::kData + 3;
  fill(odd, 8192, 5);
  ASSERT_EQ(drv_->blk(kTOut, 8, odd, 8192, false).status, kSOk);
  EXPECT_EQ(image_.read(4096, 8192), guest(odd, 8192));
  const uint64_t odd2 = TestLayout::kData + 0x10000 + 1;
  ASSERT_EQ(drv_->blk(kTIn, 8, odd2, 8192, true).status, kSOk);
  EXPECT_EQ(guest(odd2, 8192), guest(odd, 8192));
  const uint64_t aligned = TestLayout::kData + 0x20000;  // and the zero-copy path
  ASSERT_EQ(drv_->blk(kTIn, 8, aligned, 8192, true).status, kSOk);
  EXPECT_EQ(guest(aligned, 8192), guest(odd, 8192));
  EXPECT_EQ(drv_->blk(kTIn, 1, aligned, 4096, true).status, kSIoErr);  // not 4 KiB-aligned
}

// Bounce copies are bounded per disk: requests past the budget wait for earlier ones, whose
// copies are reused or freed; once the disk is idle every copy goes.
TEST_F(VirtioBlkTest, BounceBuffersStayWithinTheBudgetAndGoWhenIdle) {
  constexpr uint64_t kEach = 8 << 20;
  constexpr unsigned kRequests = 5;  // 40 MiB of copies asked for against a 32 MiB budget
  static_assert(kEach * kRequests > BlkWorker::kBounceBudget);
  TempImage big(kEach * kRequests);
  auto m = GuestMemory::create(kEach * kRequests + 16 * layout::kMiB);
  ASSERT_TRUE(m) << m.message();
  mem_ = std::move(*m);
  auto b = BlockBackend::open_file(big.path(), {.direct = true});
  if (!b) GTEST_SKIP() << "O_DIRECT not available here: " << b.message();
  make_from(std::move(*b));
  ASSERT_TRUE(drv_->init(kWant));
  std::vector<uint16_t> heads;
  for (unsigned i = 0; i < kRequests; ++i) {
    const uint64_t gpa = TestLayout::kData + 3 + i * kEach;  // never 4 KiB-aligned: bounced
    fill(gpa, kEach, static_cast<uint8_t>(i));
    heads.push_back(drv_->blk_queue(kTOut, i * kEach / kSectorSize, gpa, kEach, false));
  }
  drv_->kick();
  ASSERT_TRUE(drv_->wait_used(static_cast<uint16_t>(drv_->seen_used() + kRequests), 20000));
  drv_->seen_used() = static_cast<uint16_t>(drv_->seen_used() + kRequests);
  for (unsigned i = 0; i < kRequests; ++i) {
    EXPECT_EQ(drv_->blk_status_of(heads[i]), kSOk) << "request " << i;
    EXPECT_EQ(big.read(i * kEach, kEach), guest(TestLayout::kData + 3 + i * kEach, kEach)) << "request " << i;
  }
  const uint64_t held = blk_->stats().bounce_bytes;
  EXPECT_GT(held, 0u);
  EXPECT_LE(held, BlkWorker::kBounceBudget);
  // Idle: the copies go within the idle time (plus slack for a loaded machine).
  const auto deadline = std::chrono::steady_clock::now() + 4 * std::chrono::milliseconds(BlkWorker::kBounceIdleMs);
  while (blk_->stats().bounce_bytes != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(blk_->stats().bounce_bytes, 0u) << "copies kept on an idle disk";
  // And the disk still works after they have gone.
  const uint64_t odd = TestLayout::kData + 1;
  ASSERT_EQ(drv_->blk(kTIn, 0, odd, 8192, true).status, kSOk);
  EXPECT_EQ(guest(odd, 8192), big.read(0, 8192));
}

// --- hostile guests ---

TEST_F(VirtioBlkTest, HostileDataAddressOutsideRam) {
  start();
  auto r = drv_->blk(kTIn, 0, kRam - 256, 512, true);
  expect_survives(r);
}

TEST_F(VirtioBlkTest, HostileLengthWrappingTheAddressSpace) {
  start();
  auto r = drv_->blk(kTIn, 0, ~uint64_t{0} - 511, 1024, true);
  expect_survives(r);
}

TEST_F(VirtioBlkTest, HostileDescriptorLoop) {
  start();
  ASSERT_TRUE(mem_->write_obj<uint8_t>(TestLayout::kStatus, 0xff));
  drv_->desc(0, TestLayout::kHeaders, 16, kDescFNext, 1);
  drv_->desc(1, TestLayout::kStatus, 1, kDescFNext | kDescFWrite, 1);  // points at itself
  drv_->push_avail(0);
  expect_survives(drv_->submit_and_wait(0, 1000));
  // A loop through a data buffer and the status byte: nothing to answer into, or a byte of
  // the guest's own writable buffer; either way the VMM goes on.
  drv_->desc(0, TestLayout::kHeaders, 16, kDescFNext, 1);
  drv_->desc(1, TestLayout::kData, 512, kDescFNext | kDescFWrite, 2);
  drv_->desc(2, TestLayout::kStatus, 1, kDescFNext | kDescFWrite, 1);
  drv_->push_avail(0);
  drv_->kick();
  EXPECT_TRUE(VirtioTestDriver::wait([&] {
    return drv_->used_idx() == 2 || (drv_->status() & kStatusNeedsReset);
  }, 5000));
}

TEST_F(VirtioBlkTest, HostileNextOutOfRangeStillGetsAnIoErr) {
  start();
  uint8_t h[16] = {kTIn};
  ASSERT_TRUE(mem_->write(TestLayout::kHeaders, h, 16));
  drv_->desc(0, TestLayout::kHeaders, 16, kDescFNext, 1);
  drv_->desc(1, TestLayout::kStatus, 1, kDescFNext | kDescFWrite, 999);
  drv_->push_avail(0);
  auto r = drv_->submit_and_wait(0, 1000);
  ASSERT_TRUE(r.completed);  // the valid prefix ends in a writable byte: answered
  EXPECT_EQ(r.status, kSIoErr);
  expect_survives(r);
}

TEST_F(VirtioBlkTest, HostileIndirectTableOutsideRam) {
  start();
  drv_->desc(0, kRam - 32, 48, kDescFIndirect);
  drv_->push_avail(0);
  expect_survives(drv_->submit_and_wait(0, 1000));
}

TEST_F(VirtioBlkTest, HostileNestedIndirect) {
  start();
  drv_->desc_at(TestLayout::kIndirect, 0, TestLayout::kHeaders, 16, kDescFNext, 1);
  drv_->desc_at(TestLayout::kIndirect, 1, TestLayout::kIndirect + 0x100, 32, kDescFIndirect);
  drv_->desc(0, TestLayout::kIndirect, 32, kDescFIndirect);
  drv_->push_avail(0);
  expect_survives(drv_->submit_and_wait(0, 1000));
}

TEST_F(VirtioBlkTest, HostileChainLongerThanTheQueue) {
  start();
  for (uint16_t i = 0; i < 16; ++i)
    drv_->desc(i, TestLayout::kStatus, 1, kDescFNext | kDescFWrite, (i + 1) % 16);
  drv_->push_avail(0);
  expect_survives(drv_->submit_and_wait(0, 1000));
}

TEST_F(VirtioBlkTest, HostileAvailIdxJump) {
  start();
  drv_->set_avail_idx(0x8000);
  drv_->kick();
  EXPECT_TRUE(drv_->wait_status_bit(kStatusNeedsReset));
  EXPECT_EQ(drv_->used_idx(), 0);
  expect_survives({});
}

TEST_F(VirtioBlkTest, HostileChainWithoutStatusByteNeedsReset) {
  start();
  drv_->desc(0, TestLayout::kHeaders, 16, 0);  // header only: nowhere to put a status
  drv_->push_avail(0);
  drv_->kick();
  EXPECT_TRUE(drv_->wait_status_bit(kStatusNeedsReset));
  expect_survives({});
}

// --- quiesce, resume, save/restore ---

TEST_F(VirtioBlkTest, QuiescedDeviceTakesNoRequestsUntilResumed) {
  start();
  ASSERT_TRUE(blk_->quiesce());
  EXPECT_TRUE(blk_->quiesced());
  fill(TestLayout::kData, 512, 1);
  auto r = drv_->blk(kTOut, 3, TestLayout::kData, 512, false, 200);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(image_.read(3 * 512, 512), guest(TestLayout::kData, 512));
  blk_->resume();
  ASSERT_TRUE(drv_->wait_used(1));
  EXPECT_EQ(drv_->blk_status_of(0), kSOk);
  EXPECT_EQ(image_.read(3 * 512, 512), guest(TestLayout::kData, 512));
}

TEST_F(VirtioBlkTest, SaveRestoreContinuesOnANewDevice) {
  start();
  fill(TestLayout::kData, 512, 11);
  ASSERT_EQ(drv_->blk(kTOut, 7, TestLayout::kData, 512, false).status, kSOk);
  ASSERT_TRUE(blk_->quiesce());
  // A request the source never took: it must be served by the destination.
  fill(TestLayout::kData + 0x1000, 512, 22);
  const uint16_t pending = drv_->blk_queue(kTOut, 8, TestLayout::kData + 0x1000, 512, false);
  drv_->kick();
  const std::vector<uint8_t> blob = mmio_->save();
  mmio_.reset();  // the source goes away

  auto b = BlockBackend::open_file(image_.path(), {});
  ASSERT_TRUE(b);
  auto blk = VirtioBlk::create(std::move(*b), "minihv-test-serial");
  ASSERT_TRUE(blk);
  VirtioBlk* dst = blk->get();
  ASSERT_TRUE(dst->quiesce());  // destination: no I/O before the switch-over completes
  auto t = VirtioMmio::create(*mem_, irq_, std::move(*blk));
  ASSERT_TRUE(t);
  Status s = (*t)->restore(blob);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ((*t)->save(), blob);
  VirtioTestDriver d2(**t, *mem_);
  EXPECT_TRUE(d2.status() & kStatusDriverOk);
  dst->resume();
  EXPECT_TRUE(VirtioTestDriver::wait([&] { return drv_->used_idx() == 2; }, 5000));
  EXPECT_EQ(drv_->blk_status_of(pending), kSOk);
  EXPECT_EQ(image_.read(8 * 512, 512), guest(TestLayout::kData + 0x1000, 512));
  mmio_ = std::move(*t);
}

TEST_F(VirtioBlkTest, RestoreRefusesADiskOfAnotherSize) {
  start();
  ASSERT_TRUE(blk_->quiesce());
  const std::vector<uint8_t> blob = mmio_->save();
  TempImage other(kDiskBytes * 2);
  auto b = BlockBackend::open_file(other.path(), {});
  ASSERT_TRUE(b);
  auto blk = VirtioBlk::create(std::move(*b));
  ASSERT_TRUE(blk);
  auto t = VirtioMmio::create(*mem_, irq_, std::move(*blk));
  ASSERT_TRUE(t);
  Status s = (*t)->restore(blob);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("sectors"), std::string::npos) << s.message();
  EXPECT_EQ((*t)->status(), 0u);
}

TEST_F(VirtioBlkTest, DestructionWithRequestsInFlightIsClean) {
  start(256);
  for (unsigned i = 0; i < 60; ++i)
    drv_->blk_queue(kTIn, i * 8ull, TestLayout::kData + i * 4096ull, 4096, true);
  drv_->kick();
  mmio_.reset();  // joins the I/O thread after the in-flight reads landed
  SUCCEED();
}

}  // namespace
}  // namespace minihv
