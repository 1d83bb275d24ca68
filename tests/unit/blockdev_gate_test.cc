// The data-path write gate: a virtio-blk device on a volume disk's extent (real file, O_DIRECT,
// io_uring) writes only while the disk's lease is provably current; reads are unaffected.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "blockdev/disk_attach.h"
#include "blockdev/file_device.h"
#include "blockdev/write_deadlines.h"
#include "tests/unit/virtio_test_driver.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

using namespace virtio;
using namespace virtio::blk;
using testing::CountingIrq;
using testing::TestLayout;
using testing::VirtioTestDriver;
using namespace std::chrono_literals;

constexpr uint64_t kWant = kFVersion1 | kRingFeatures | kFFlush | kFBlkSize | kFSegMax;

class BlockdevGate : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/minihv-gate-XXXXXX";
    UniqueFd fd(mkstemp(tmpl));
    path_ = tmpl;
    blockdev::FormatOptions o;
    o.cluster = "lab";
    o.size = 32ull << 20;
    o.force = true;
    ASSERT_TRUE(blockdev::Volume::format(path_, o));
    auto v = blockdev::Volume::open(path_, true, clock_);
    ASSERT_TRUE(v);
    vol_ = std::move(*v);
    auto d = vol_->create_disk("web", 1 << 20, "t");
    ASSERT_TRUE(d) << d.message();
    disk_ = *d;
    auto m = GuestMemory::create(16 * layout::kMiB);
    ASSERT_TRUE(m);
    mem_ = std::move(*m);
  }
  void TearDown() override {
    drv_.reset();
    mmio_.reset();
    std::filesystem::remove(path_);
  }
  // A device on the disk's extent whose writes ask `gate`.
  void make(std::function<bool()> gate, BlockBackend::DeadlineWatch watch = {}) {
    BlockBackend::Extent e;
    e.fd = UniqueFd(::open(path_.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    e.offset = disk_.offset;
    e.length = disk_.size;
    e.alignment = blockdev::kBlockSize;
    e.name = path_ + ":web";
    auto b = BlockBackend::from_extent(std::move(e));
    ASSERT_TRUE(b) << b.message();
    b->set_write_gate(std::move(gate));
    b->set_deadline_watch(std::move(watch));
    auto blk = VirtioBlk::create(std::move(*b), "gate");
    ASSERT_TRUE(blk);
    blk_ = blk->get();
    auto t = VirtioMmio::create(*mem_, irq_, std::move(*blk));
    ASSERT_TRUE(t);
    mmio_ = std::move(*t);
    drv_ = std::make_unique<VirtioTestDriver>(*mmio_, *mem_);
    ASSERT_TRUE(drv_->init(kWant, 16));
  }
  std::vector<uint8_t> on_disk(uint64_t off, size_t n) {
    std::vector<uint8_t> b(n);
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(pread(fd.get(), b.data(), n, static_cast<off_t>(disk_.offset + off)), static_cast<ssize_t>(n));
    return b;
  }
  VirtioTestDriver::BlkDone write_block(uint64_t sector, uint8_t fill) {
    std::vector<uint8_t> b(4096, fill);
    EXPECT_TRUE(mem_->write(TestLayout::kData, b.data(), b.size()));
    return drv_->blk(kTOut, sector, TestLayout::kData, 4096, false);
  }

  blockdev::ManualClock clock_;
  std::string path_;
  std::unique_ptr<blockdev::Volume> vol_;
  blockdev::DiskEntry disk_;
  std::unique_ptr<GuestMemory> mem_;
  CountingIrq irq_;
  std::unique_ptr<VirtioMmio> mmio_;
  std::unique_ptr<VirtioTestDriver> drv_;
  VirtioBlk* blk_ = nullptr;
};

TEST_F(BlockdevGate, HolderFrozenPastFailWritesNothingOnWake) {
  auto lease = vol_->acquire(vol_->disk_slot(disk_), "vm");
  ASSERT_TRUE(lease) << lease.message();
  auto validity = (*lease)->validity();
  make([validity] { return validity->may_write(); });
  auto ok = write_block(8, 0x11);
  ASSERT_TRUE(ok.completed);
  EXPECT_EQ(ok.status, kSOk);
  EXPECT_EQ(on_disk(8 * 512, 4096), std::vector<uint8_t>(4096, 0x11));
  // Frozen (nothing renewed) past the fail timeout; nobody else ran yet. The first write on wake:
  clock_.advance(vol_->super().timings.fail + 1ms);
  auto refused = write_block(8, 0x22);
  ASSERT_TRUE(refused.completed);
  EXPECT_EQ(refused.status, kSIoErr);
  EXPECT_EQ(on_disk(8 * 512, 4096), std::vector<uint8_t>(4096, 0x11)) << "a write reached the disk";
  // Reads and flushes still work (the guest may read what it has; nothing changes the disk).
  auto r = drv_->blk(kTIn, 8, TestLayout::kData + 0x2000, 4096, true);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.status, kSOk);
  EXPECT_EQ(blk_->stats().errors, 1u);
}

TEST_F(BlockdevGate, ReleasedDiskTakesNoMoreWrites) {
  auto d = blockdev::VolumeDisk::attach({path_, "web"}, "vm", nullptr);
  ASSERT_TRUE(d) << d.message();
  make((*d)->write_gate());
  EXPECT_EQ(write_block(0, 0x33).status, kSOk);
  ASSERT_TRUE((*d)->release());
  EXPECT_EQ(write_block(0, 0x44).status, kSIoErr);
  EXPECT_EQ(on_disk(0, 4096), std::vector<uint8_t>(4096, 0x33));
}

TEST_F(BlockdevGate, WritesPastTheExtentAreRefused) {
  make([] { return true; });
  const uint64_t sectors = disk_.size / 512;
  auto past = write_block(sectors, 0x55);
  ASSERT_TRUE(past.completed);
  EXPECT_EQ(past.status, kSIoErr);
  auto straddle = write_block(sectors - 4, 0x55);  // 8 sectors from 4 before the end
  ASSERT_TRUE(straddle.completed);
  EXPECT_EQ(straddle.status, kSIoErr);
  // The next disk's bytes (or the free space after) are untouched.
  std::vector<uint8_t> after(4096);
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(pread(fd.get(), after.data(), 4096, static_cast<off_t>(disk_.offset + disk_.size)), 4096);
  EXPECT_EQ(after, std::vector<uint8_t>(4096, 0));
}

// The gate is asked when the writes are handed to the kernel, once for all those taken from one
// kick, not when each was taken from the queue: with a gate that closes after its first answer, a
// batch lands whole or not at all. (Asked per request, the first write of the batch landed on an
// answer the gate had taken back before the batch reached the kernel.)
TEST_F(BlockdevGate, AWriteReachesTheKernelOnlyOnAnAnswerTakenJustBeforeIt) {
  std::atomic<int> asked{0};
  make([&asked] { return asked.fetch_add(1) == 0; });
  constexpr unsigned kBatch = 4;
  std::vector<uint16_t> heads;
  for (unsigned i = 0; i < kBatch; ++i) {
    std::vector<uint8_t> b(4096, static_cast<uint8_t>(0x60 + i));
    ASSERT_TRUE(mem_->write(TestLayout::kData + i * 4096ull, b.data(), b.size()));
    heads.push_back(drv_->blk_queue(kTOut, 8 * i, TestLayout::kData + i * 4096ull, 4096, false));
  }
  drv_->kick();
  ASSERT_TRUE(drv_->wait_used(static_cast<uint16_t>(drv_->seen_used() + kBatch)));
  drv_->seen_used() = static_cast<uint16_t>(drv_->seen_used() + kBatch);
  EXPECT_EQ(asked.load(), 1) << "one answer for the batch";
  for (unsigned i = 0; i < kBatch; ++i) {
    EXPECT_EQ(drv_->blk_status_of(heads[i]), kSOk) << "write " << i;
    EXPECT_EQ(on_disk(4096ull * i, 4096), std::vector<uint8_t>(4096, static_cast<uint8_t>(0x60 + i)));
  }
  // The gate has closed since: the next write is refused and changes nothing.
  EXPECT_EQ(write_block(0, 0x70).status, kSIoErr);
  EXPECT_EQ(on_disk(0, 4096), std::vector<uint8_t>(4096, 0x60));
}

// A cluster VM's disk (blockdev/write_deadlines.h): a write carries the fence's deadline of the
// moment it is handed to the kernel, shown to the node before it gets there (the hook holds it
// there a while, as a stalled io-wq would) and cleared once it has completed.
TEST_F(BlockdevGate, AWriteInTheKernelIsShownWithItsDeadlineUntilItCompletes) {
  auto page = blockdev::WriteDeadlines::create();
  ASSERT_TRUE(page) << page.message();
  std::atomic<int64_t> until{5'000'000'000};
  std::mutex mu;
  std::vector<int64_t> published;
  auto p = *page;
  make([] { return true; }, {[&until] { return until.load(); },
                             [&, p](int64_t oldest) {
                               p->publish(blockdev::Nanos(oldest));
                               std::lock_guard lock(mu);
                               published.push_back(oldest);
                             },
                             300ms});
  std::vector<uint8_t> b(4096, 0x44);
  ASSERT_TRUE(mem_->write(TestLayout::kData, b.data(), b.size()));
  drv_->blk_queue(kTOut, 16, TestLayout::kData, 4096, false);
  drv_->kick();
  bool seen = false;  // the page shows the write while it is held on its way to the kernel
  for (int i = 0; i < 2000 && !seen; ++i) {
    seen = p->oldest().count() == 5'000'000'000;
    if (!seen) std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(seen) << "the write's deadline was never shown";
  ASSERT_TRUE(drv_->wait_used(static_cast<uint16_t>(drv_->seen_used() + 1)));
  drv_->seen_used() = static_cast<uint16_t>(drv_->seen_used() + 1);
  EXPECT_EQ(on_disk(16 * 512, 4096), b);
  until = 7'000'000'000;
  EXPECT_EQ(write_block(24, 0x45).status, kSOk);
  EXPECT_EQ(p->oldest().count(), 0) << "a completed write is still shown in flight";
  std::lock_guard lock(mu);
  EXPECT_EQ(published, (std::vector<int64_t>{5'000'000'000, 0, 7'000'000'000, 0}));
}

}  // namespace
}  // namespace minihv
