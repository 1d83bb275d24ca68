// virtio-blk's on-error policy against a real full filesystem: the image lives on a 1 MiB tmpfs
// mounted here (the tests run as root) and filled up, so the kernel answers a write ENOSPC.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "tests/unit/virtio_test_driver.h"
#include "vmm/devices/disk_spec.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

using namespace virtio;
using namespace virtio::blk;
using testing::CountingIrq;
using testing::TestLayout;
using testing::VirtioTestDriver;

constexpr uint64_t kRam = 16 * layout::kMiB;
constexpr uint64_t kWant = kFVersion1 | kRingFeatures | kFFlush | kFBlkSize | kFSegMax;
constexpr uint64_t kImageBytes = 256 << 10;  // sparse: its blocks are taken on first write
constexpr uint32_t kIoBytes = 4096;
constexpr int kUnansweredMs = 300;  // how long a parked request is watched for staying unanswered
constexpr const char* kNoSpace = "No space left on device";

// A 1 MiB tmpfs under a temp dir with a sparse image and a filler file that takes all the rest.
class FullTmpfs {
public:
  FullTmpfs() {
    char name[] = "/tmp/minihv-onerror-XXXXXX";
    if (!mkdtemp(name)) return;
    dir_ = name;
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=1M") == 0;
    if (!mounted_) return;
    UniqueFd img(::open(image().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ok_ = img.valid() && ::ftruncate(img.get(), kImageBytes) == 0 && fill();
  }
  ~FullTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  bool ok() const { return ok_; }
  std::string image() const { return dir_ + "/disk.img"; }
  bool free_space() { return ::unlink(filler().c_str()) == 0; }
  std::vector<uint8_t> read(uint64_t off, size_t n) const {
    std::vector<uint8_t> b(n);
    UniqueFd fd(::open(image().c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(fd.get(), b.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    return b;
  }

private:
  std::string filler() const { return dir_ + "/filler"; }
  bool fill() {
    UniqueFd fd(::open(filler().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    const std::vector<uint8_t> chunk(kIoBytes, 0xAB);
    while (fd.valid() && ::write(fd.get(), chunk.data(), chunk.size()) > 0) {
    }
    return fd.valid() && errno == ENOSPC;
  }
  std::string dir_;
  bool mounted_ = false, ok_ = false;
};

class VirtioBlkOnErrorTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(fs_.ok()) << "cannot mount and fill a tmpfs (tests run as root)";
    auto m = GuestMemory::create(kRam);
    ASSERT_TRUE(m) << m.message();
    mem_ = std::move(*m);
  }
  void start(DiskErrorAction action, BlockBackend::FileOptions opts = {}) {
    auto b = BlockBackend::open_file(fs_.image(), opts);
    ASSERT_TRUE(b) << b.message();
    auto blk = VirtioBlk::create(std::move(*b), "on-error");
    ASSERT_TRUE(blk) << blk.message();
    blk_ = blk->get();
    blk_->set_error_policy({action, [this](const std::string& why) {
                              std::lock_guard lock(mu_);
                              stops_.push_back(why);
                            }});
    auto t = VirtioMmio::create(*mem_, irq_, std::move(*blk));
    ASSERT_TRUE(t) << t.message();
    mmio_ = std::move(*t);
    drv_ = std::make_unique<VirtioTestDriver>(*mmio_, *mem_);
    ASSERT_TRUE(drv_->init(kWant));
  }
  std::vector<uint8_t> pattern(uint8_t seed) {
    std::vector<uint8_t> b(kIoBytes);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(seed + i * 13);
    EXPECT_TRUE(mem_->write(TestLayout::kData, b.data(), b.size()));
    return b;
  }
  size_t stops() {
    std::lock_guard lock(mu_);
    return stops_.size();
  }
  std::string last_stop() {
    std::lock_guard lock(mu_);
    return stops_.empty() ? "" : stops_.back();
  }
  // Queues a write of the pattern to sector 0 and kicks; returns its head.
  uint16_t queue_write() {
    const uint16_t head = drv_->blk_queue(kTOut, 0, TestLayout::kData, kIoBytes, false);
    drv_->kick();
    return head;
  }
  bool stays_unanswered() { return !drv_->wait_used(static_cast<uint16_t>(drv_->seen_used() + 1), kUnansweredMs); }
  // Waits for `n` more used entries and takes them as seen.
  bool answered(uint16_t n) {
    const auto target = static_cast<uint16_t>(drv_->seen_used() + n);
    if (!drv_->wait_used(target)) return false;
    drv_->seen_used() = target;
    return true;
  }

  FullTmpfs fs_;
  std::mutex mu_;  // before the device: its I/O thread reports stops here until it is gone
  std::vector<std::string> stops_;
  std::unique_ptr<GuestMemory> mem_;
  CountingIrq irq_;
  VirtioBlk* blk_ = nullptr;
  std::unique_ptr<VirtioMmio> mmio_;
  std::unique_ptr<VirtioTestDriver> drv_;
};

TEST_F(VirtioBlkOnErrorTest, ReportAnswersIoErrAtOnce) {
  start(DiskErrorAction::kReport);
  pattern(1);
  auto w = drv_->blk(kTOut, 0, TestLayout::kData, kIoBytes, false);
  ASSERT_TRUE(w.completed);
  EXPECT_EQ(w.status, kSIoErr);
  EXPECT_EQ(stops(), 0u);
  EXPECT_EQ(blk_->parked_requests(), 0u);
}

// The write waits unanswered while the disk is full (a retry that fails again stops again); once
// space is freed a retry completes it, exactly once, with its bytes on disk.
TEST_F(VirtioBlkOnErrorTest, StopParksTheWriteUntilSpaceIsFreedAndARetry) {
  start(DiskErrorAction::kStop);
  const std::vector<uint8_t> data = pattern(7);
  const uint16_t head = queue_write();
  ASSERT_TRUE(VirtioTestDriver::wait([&] { return stops() == 1; }, 5000)) << "no stop reported";
  EXPECT_NE(last_stop().find(kNoSpace), std::string::npos) << last_stop();
  EXPECT_NE(last_stop().find(fs_.image()), std::string::npos) << last_stop();
  EXPECT_TRUE(stays_unanswered());
  EXPECT_EQ(blk_->parked_requests(), 1u);

  // A request made while stopped is not taken; a retry takes it, and the write fails again.
  const uint16_t read_head = drv_->blk_queue(kTIn, 8, TestLayout::kData + kIoBytes, kIoBytes, true);
  drv_->kick();
  EXPECT_TRUE(stays_unanswered()) << "a request was taken while stopped";
  blk_->retry();
  ASSERT_TRUE(VirtioTestDriver::wait([&] { return stops() == 2; }, 5000)) << "a failed retry must stop again";
  ASSERT_TRUE(answered(1));
  EXPECT_EQ(drv_->blk_status_of(read_head), kSOk);
  EXPECT_TRUE(stays_unanswered());

  ASSERT_TRUE(fs_.free_space());
  blk_->retry();
  ASSERT_TRUE(answered(1));
  EXPECT_EQ(drv_->blk_status_of(head), kSOk);
  EXPECT_EQ(fs_.read(0, kIoBytes), data);
  EXPECT_EQ(blk_->parked_requests(), 0u);
  EXPECT_EQ(blk_->stats().errors, 0u);
  EXPECT_EQ(blk_->stats().writes, 1u) << "completed once";
  EXPECT_TRUE(stays_unanswered()) << "answered twice";
}

// Quiescing (a migration's save) must not wait for a parked request, and resume retries it.
TEST_F(VirtioBlkOnErrorTest, QuiesceReturnsWithARequestParkedAndResumeRetriesIt) {
  start(DiskErrorAction::kStop);
  const std::vector<uint8_t> data = pattern(9);
  const uint16_t head = queue_write();
  ASSERT_TRUE(VirtioTestDriver::wait([&] { return stops() == 1; }, 5000));
  ASSERT_TRUE(blk_->quiesce());
  EXPECT_EQ(blk_->parked_requests(), 1u);
  ASSERT_TRUE(fs_.free_space());
  blk_->resume();
  ASSERT_TRUE(answered(1));
  EXPECT_EQ(drv_->blk_status_of(head), kSOk);
  EXPECT_EQ(fs_.read(0, kIoBytes), data);
}

// Through O_DIRECT with a guest buffer that is not aligned: the parked write gives its bounce copy
// back (requests waiting for the copy budget must not wait for a VM to be resumed) and the retry
// copies the guest's data again.
TEST_F(VirtioBlkOnErrorTest, AParkedBouncedWriteHoldsNoCopyAndIsCopiedAgainOnRetry) {
  start(DiskErrorAction::kStop, {.direct = true});
  const uint64_t odd = TestLayout::kData + 3;
  std::vector<uint8_t> data(kIoBytes);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(5 + i * 11);
  ASSERT_TRUE(mem_->write(odd, data.data(), data.size()));
  const uint16_t head = drv_->blk_queue(kTOut, 0, odd, kIoBytes, false);
  drv_->kick();
  ASSERT_TRUE(VirtioTestDriver::wait([&] { return stops() == 1; }, 5000)) << "no stop reported";
  EXPECT_EQ(blk_->parked_requests(), 1u);
  EXPECT_EQ(blk_->stats().bounce_bytes, 0u) << "a parked request keeps its bounce copy";
  ASSERT_TRUE(fs_.free_space());
  blk_->retry();
  ASSERT_TRUE(answered(1));
  EXPECT_EQ(drv_->blk_status_of(head), kSOk);
  EXPECT_EQ(fs_.read(0, kIoBytes), data);
}

TEST_F(VirtioBlkOnErrorTest, DestructionWithARequestParkedIsClean) {
  start(DiskErrorAction::kStop);
  pattern(3);
  queue_write();
  ASSERT_TRUE(VirtioTestDriver::wait([&] { return stops() == 1; }, 5000));
  mmio_.reset();
  SUCCEED();
}

// --- the --disk text ---

TEST(VirtioBlkDiskSpec, OnErrorIsTheLastFieldAndDefaultsToStop) {
  auto plain = parse_disk_spec("/img/a,b.raw");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->target, "/img/a,b.raw") << "a comma without on-error= is part of the path";
  EXPECT_EQ(plain->on_error, DiskErrorAction::kStop);
  auto report = parse_disk_spec("/img/a,b.raw,on-error=report");
  ASSERT_TRUE(report);
  EXPECT_EQ(report->target, "/img/a,b.raw");
  EXPECT_EQ(report->on_error, DiskErrorAction::kReport);
  auto volume = parse_disk_spec("/dev/vol:web,on-error=stop");
  ASSERT_TRUE(volume);
  EXPECT_EQ(volume->target, "/dev/vol:web");
  EXPECT_EQ(volume->on_error, DiskErrorAction::kStop);
}

TEST(VirtioBlkDiskSpec, RefusesABadValue) {
  for (const char* bad : {"/img,on-error=pause", "/img,on-error=", "/img,on-error=stop,x", ",on-error=stop"}) {
    auto s = parse_disk_spec(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_TRUE(s.status().is_invalid_input()) << bad;
  }
}

TEST(VirtioBlkDiskSpec, AnExistingFileIsTakenWhole) {
  char dir[] = "/tmp/minihv-spec-XXXXXX";
  ASSERT_TRUE(mkdtemp(dir));
  const std::string path = std::string(dir) + "/x,on-error=report";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  auto s = parse_disk_spec(path);
  ::unlink(path.c_str());
  ::rmdir(dir);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->target, path);
  EXPECT_EQ(s->on_error, DiskErrorAction::kStop);
}

TEST(VirtioBlkDiskSpec, StopsOnFullQuotaAndDeviceErrorsOnly) {
  EXPECT_TRUE(stops_on_error(ENOSPC));
  EXPECT_TRUE(stops_on_error(EDQUOT));
  EXPECT_TRUE(stops_on_error(EIO));
  EXPECT_FALSE(stops_on_error(EINVAL));
  EXPECT_FALSE(stops_on_error(EBADF));
}

}  // namespace
}  // namespace minihv
