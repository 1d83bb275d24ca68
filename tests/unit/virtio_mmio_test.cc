// VirtioMmio against a fake device: registers, negotiation, status machine, interrupts, notify,
// save/restore and corrupt-blob rejection.
#include "vmm/devices/virtio_mmio.h"

#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/unit/virtio_test_driver.h"
#include "vmm/devices/virtio_blob.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

using namespace virtio;
using namespace virtio::mmio;
using testing::CountingIrq;
using testing::TestLayout;
using testing::VirtioTestDriver;

constexpr uint32_t kFakeId = 42;
constexpr uint64_t kFakeFeature = feature(3);

class FakeDevice final : public VirtioDevice {
public:
  uint32_t device_id() const override { return kFakeId; }
  uint64_t features() const override { return kRingFeatures | kFakeFeature; }
  unsigned num_queues() const override { return 2; }
  uint16_t queue_max_size() const override { return 64; }
  void read_config(uint64_t offset, uint8_t* data, uint32_t len) const override {
    for (uint32_t i = 0; i < len; ++i) data[i] = static_cast<uint8_t>(0xa0 + offset + i);
  }
  void write_config(uint64_t offset, const uint8_t*, uint32_t len) override {
    last_config_write = offset + len;
  }
  Status activate(const VirtioActivation& act) override {
    ++activations;
    act_ = act;
    return fail_activate ? Status::error("no") : Status::ok();
  }
  void reset() override { ++resets; }
  std::vector<uint8_t> save_state() const override { return {1, 2, 3}; }
  Status restore_state(std::span<const uint8_t> b) override {
    return b.size() == 3 && b[0] == 1 ? Status::ok() : Status::error("bad fake state");
  }
  int activations = 0, resets = 0;
  uint64_t last_config_write = 0;
  bool fail_activate = false;
  VirtioActivation act_;
};

class VirtioMmioTest : public ::testing::Test {
protected:
  void SetUp() override {
    auto m = GuestMemory::create(16 * layout::kMiB);
    ASSERT_TRUE(m) << m.message();
    mem_ = std::move(*m);
    auto dev = std::make_unique<FakeDevice>();
    fake_ = dev.get();
    auto t = VirtioMmio::create(*mem_, irq_, std::move(dev));
    ASSERT_TRUE(t) << t.message();
    mmio_ = std::move(*t);
    drv_ = std::make_unique<VirtioTestDriver>(*mmio_, *mem_);
  }
  static constexpr uint64_t kWant = kFVersion1 | kRingFeatures | kFakeFeature;

  std::unique_ptr<GuestMemory> mem_;
  CountingIrq irq_;
  FakeDevice* fake_ = nullptr;
  std::unique_ptr<VirtioMmio> mmio_;
  std::unique_ptr<VirtioTestDriver> drv_;
};

TEST_F(VirtioMmioTest, IdentityRegisters) {
  EXPECT_EQ(drv_->rd(kMagicValue), 0x74726976u);
  EXPECT_EQ(drv_->rd(kVersion), 2u);
  EXPECT_EQ(drv_->rd(kDeviceId), kFakeId);
  EXPECT_EQ(drv_->rd(kVendorId), kVendor);
  EXPECT_EQ(drv_->rd(kQueueNumMax), 64u);
  drv_->wr(kQueueSel, 2);  // no such queue
  EXPECT_EQ(drv_->rd(kQueueNumMax), 0u);
  EXPECT_EQ(drv_->rd(kShmLenLow), kShmLenNone);
}

TEST_F(VirtioMmioTest, OffersVersion1AndDeviceFeatures) {
  EXPECT_EQ(drv_->device_features(), kWant);
}

TEST_F(VirtioMmioTest, FeaturesOkOnlyForASubsetWithVersion1) {
  EXPECT_TRUE(drv_->negotiate(kFVersion1));
  EXPECT_TRUE(drv_->negotiate(kWant));
  EXPECT_FALSE(drv_->negotiate(kWant | feature(40)));  // not offered
  EXPECT_FALSE(drv_->negotiate(kFakeFeature));         // legacy driver: no VERSION_1
}

TEST_F(VirtioMmioTest, DriverFeaturesFrozenAfterFeaturesOk) {
  ASSERT_TRUE(drv_->negotiate(kFVersion1));
  drv_->wr(kDriverFeaturesSel, 0);
  drv_->wr(kDriverFeatures, static_cast<uint32_t>(kFakeFeature));
  drv_->setup_queue(16);
  drv_->add_status(kStatusDriverOk);
  ASSERT_EQ(fake_->activations, 1);
  EXPECT_EQ(fake_->act_.features, kFVersion1);
}

TEST_F(VirtioMmioTest, DriverOkActivatesWithLiveQueues) {
  ASSERT_TRUE(drv_->init(kWant));
  EXPECT_EQ(fake_->activations, 1);
  EXPECT_EQ(fake_->act_.features, kWant);
  ASSERT_EQ(fake_->act_.queues.size(), 2u);
  EXPECT_TRUE(fake_->act_.queues[0].active());
  EXPECT_FALSE(fake_->act_.queues[1].active());  // never made ready
  EXPECT_EQ(fake_->act_.queues[0].size(), 16);
  EXPECT_EQ(fake_->act_.queues[0].desc_gpa(), TestLayout::kDesc);
  ASSERT_EQ(fake_->act_.notify_fds.size(), 2u);
  EXPECT_EQ(fake_->act_.notify_fds[0], mmio_->notify_eventfd(0));
}

TEST_F(VirtioMmioTest, DriverOkWithoutFeaturesOkIsRefused) {
  drv_->wr(kStatus, kStatusAcknowledge | kStatusDriver);
  drv_->add_status(kStatusDriverOk);
  EXPECT_FALSE(drv_->status() & kStatusDriverOk);
  EXPECT_EQ(fake_->activations, 0);
}

TEST_F(VirtioMmioTest, WritingZeroResetsEverything) {
  ASSERT_TRUE(drv_->init(kWant));
  const int resets = fake_->resets;
  drv_->wr(kStatus, 0);
  EXPECT_EQ(drv_->status(), 0u);
  EXPECT_GT(fake_->resets, resets);
  drv_->wr(kQueueSel, 0);
  EXPECT_EQ(drv_->rd(kQueueReady), 0u);
  EXPECT_EQ(drv_->rd(kQueueDescLow), 0u);
  EXPECT_EQ(drv_->rd(kQueueNum), 64u);
}

TEST_F(VirtioMmioTest, StatusBitsCannotBeClearedWithoutReset) {
  ASSERT_TRUE(drv_->negotiate(kFVersion1));
  drv_->wr(kStatus, kStatusAcknowledge);  // drops DRIVER and FEATURES_OK: ignored
  EXPECT_TRUE(drv_->status() & kStatusFeaturesOk);
}

TEST_F(VirtioMmioTest, QueueConfigOnlyWhileNotReady) {
  ASSERT_TRUE(drv_->negotiate(kFVersion1));
  drv_->setup_queue(16);
  drv_->wr(kQueueNum, 32);  // queue is ready: ignored
  drv_->wr(kQueueDescLow, 0x1230);
  EXPECT_EQ(drv_->rd(kQueueNum), 16u);
  EXPECT_EQ(drv_->rd(kQueueDescLow), TestLayout::kDesc);
  drv_->wr(kQueueReady, 0);
  drv_->wr(kQueueNum, 32);
  EXPECT_EQ(drv_->rd(kQueueNum), 32u);
  drv_->wr(kQueueNum, 128);  // above QueueNumMax: ignored
  EXPECT_EQ(drv_->rd(kQueueNum), 32u);
  drv_->wr(kQueueReady, 1);
  drv_->add_status(kStatusDriverOk);
  drv_->wr(kQueueReady, 0);  // after DRIVER_OK: ignored
  EXPECT_EQ(drv_->rd(kQueueReady), 1u);
}

TEST_F(VirtioMmioTest, BadQueueAtDriverOkSetsNeedsReset) {
  ASSERT_TRUE(drv_->negotiate(kFVersion1));
  drv_->setup_queue(16, 16 * layout::kMiB - 64);  // descriptor table runs off the end of RAM
  drv_->add_status(kStatusDriverOk);
  EXPECT_TRUE(drv_->status() & kStatusNeedsReset);
  EXPECT_TRUE(drv_->rd(kInterruptStatus) & kIntConfigChange);
  EXPECT_EQ(irq_.count.load(), 1);
  EXPECT_EQ(fake_->activations, 0);
}

TEST_F(VirtioMmioTest, DeviceActivationFailureSetsNeedsReset) {
  fake_->fail_activate = true;
  EXPECT_FALSE(drv_->init(kWant));
  EXPECT_TRUE(drv_->status() & kStatusNeedsReset);
}

TEST_F(VirtioMmioTest, InterruptsSetStatusAndTriggerAndAckClears) {
  ASSERT_TRUE(drv_->init(kWant));
  fake_->act_.signals->signal_used();
  EXPECT_EQ(irq_.count.load(), 1);
  EXPECT_EQ(drv_->rd(kInterruptStatus), kIntUsedBuffer);
  fake_->act_.signals->set_needs_reset();
  EXPECT_EQ(irq_.count.load(), 2);
  EXPECT_EQ(drv_->rd(kInterruptStatus), kIntUsedBuffer | kIntConfigChange);
  EXPECT_TRUE(drv_->status() & kStatusNeedsReset);
  drv_->wr(kInterruptAck, kIntUsedBuffer);
  EXPECT_EQ(drv_->rd(kInterruptStatus), kIntConfigChange);
}

TEST_F(VirtioMmioTest, QueueNotifyWriteSignalsTheEventfd) {
  pollfd p{mmio_->notify_eventfd(1), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  drv_->wr(kQueueNotify, 1);
  ASSERT_EQ(poll(&p, 1, 0), 1);
  uint64_t n = 0;
  ASSERT_EQ(read(p.fd, &n, sizeof n), 8);
  EXPECT_EQ(n, 1u);
  drv_->wr(kQueueNotify, 7);  // no such queue: dropped, and nothing breaks
  EXPECT_EQ(VirtioMmio::kNotifyOffset, 0x50u);
}

TEST_F(VirtioMmioTest, ConfigSpaceGoesToTheDevice) {
  uint8_t b[2];
  mmio_->bus_read(kConfig + 4, b, 2);
  EXPECT_EQ(b[0], 0xa4);
  EXPECT_EQ(b[1], 0xa5);
  mmio_->bus_write(kConfig + 8, b, 2);
  EXPECT_EQ(fake_->last_config_write, 10u);
}

TEST_F(VirtioMmioTest, RegistersNeedAligned32BitAccesses) {
  uint8_t b[2] = {0xff, 0xff};
  mmio_->bus_read(kMagicValue, b, 2);
  EXPECT_EQ(b[0], 0);
  uint32_t v = 0;
  mmio_->bus_read(kMagicValue + 2, reinterpret_cast<uint8_t*>(&v), 4);
  EXPECT_EQ(v, 0u);
  const uint8_t one = kStatusAcknowledge;
  mmio_->bus_write(kStatus, &one, 1);
  EXPECT_EQ(drv_->status(), 0u);
}

// --- save / restore ---

class VirtioMmioStateTest : public VirtioMmioTest {
protected:
  std::vector<uint8_t> running_state() {
    EXPECT_TRUE(drv_->init(kWant));
    fake_->act_.signals->signal_used();
    drv_->wr(kQueueSel, 1);
    return mmio_->save();
  }
  std::unique_ptr<VirtioMmio> fresh() {
    auto t = VirtioMmio::create(*mem_, irq_, std::make_unique<FakeDevice>());
    EXPECT_TRUE(t);
    return std::move(*t);
  }
};

TEST_F(VirtioMmioStateTest, RoundTripRestoresRegistersAndReactivates) {
  const std::vector<uint8_t> blob = running_state();
  auto other = fresh();
  const int irqs = irq_.count.load();
  ASSERT_TRUE(other->restore(blob)) << other->restore(blob).message();
  EXPECT_EQ(other->save(), blob);
  EXPECT_EQ(other->status(), mmio_->status());
  EXPECT_EQ(other->interrupt_status(), kIntUsedBuffer);
  EXPECT_GT(irq_.count.load(), irqs);  // the pending interrupt is raised again
  auto& dev = static_cast<FakeDevice&>(other->device());
  EXPECT_EQ(dev.activations, 1);
  EXPECT_EQ(dev.act_.features, kWant);
  VirtioTestDriver d2(*other, *mem_);
  EXPECT_EQ(d2.rd(kQueueSel), 0u);  // write-only register reads zero...
  EXPECT_EQ(d2.rd(kQueueReady), 0u);  // ...but the selection (queue 1, never set up) came along
  d2.wr(kQueueSel, 0);
  EXPECT_EQ(d2.rd(kQueueDescLow), TestLayout::kDesc);
  EXPECT_EQ(d2.rd(kQueueReady), 1u);
}

TEST_F(VirtioMmioStateTest, RejectsEveryTruncation) {
  const std::vector<uint8_t> blob = running_state();
  auto other = fresh();
  for (size_t n = 0; n < blob.size(); ++n)
    EXPECT_FALSE(other->restore({blob.data(), n})) << "accepted " << n << " of " << blob.size();
  std::vector<uint8_t> longer = blob;
  longer.push_back(0);
  Status s = other->restore(longer);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("trailing"), std::string::npos) << s.message();
}

// Patches the little-endian field of `size` bytes at `off`.
std::vector<uint8_t> patched(std::vector<uint8_t> b, size_t off, uint64_t v, size_t size) {
  for (size_t i = 0; i < size; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
  return b;
}

TEST_F(VirtioMmioStateTest, RejectsCorruptFieldsWithAClearMessage) {
  const std::vector<uint8_t> blob = running_state();
  auto other = fresh();
  // Offsets of the header fields, as save() writes them (docs/virtio.md).
  constexpr size_t kMagicOff = 0, kVersionOff = 4, kIdOff = 8, kOfferedOff = 12, kStatusOff = 20;
  constexpr size_t kDrvFeatOff = 32, kIntOff = 44, kNqOff = 52, kQ0SizeOff = 58;
  struct Case {
    size_t off;
    uint64_t v;
    size_t size;
    const char* expect;
  } cases[] = {
      {kMagicOff, 0x12345678, 4, "not a virtio-mmio blob"},
      {kVersionOff, 99, 4, "version 99"},
      {kIdOff, 2, 4, "device id"},
      {kOfferedOff, kWant | feature(40), 8, "offered features"},
      {kStatusOff, 0x10 | kStatusDriverOk | kStatusFeaturesOk, 4, "unknown status"},
      {kStatusOff, kStatusDriverOk, 4, "DRIVER_OK without FEATURES_OK"},
      {kDrvFeatOff, kFakeFeature, 8, "negotiated features"},
      {kIntOff, 4, 4, "interrupt"},
      {kNqOff, 3, 4, "queues"},
      {kQ0SizeOff, 24, 2, "queue 0"},
  };
  for (const Case& c : cases) {
    Status s = other->restore(patched(blob, c.off, c.v, c.size));
    EXPECT_FALSE(s) << c.expect;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
  }
  // A ring moved outside RAM passes parsing but cannot be re-activated.
  constexpr size_t kQ0DescOff = 61;
  Status s = other->restore(patched(blob, kQ0DescOff, 16 * layout::kMiB, 8));
  EXPECT_FALSE(s);
  EXPECT_EQ(other->status(), 0u);  // nothing half-applied
  // The original still restores after all that.
  EXPECT_TRUE(other->restore(blob));
}

TEST_F(VirtioMmioStateTest, SurvivesEverySingleByteFlip) {
  const std::vector<uint8_t> blob = running_state();
  auto other = fresh();
  for (size_t i = 0; i < blob.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> b = blob;
      b[i] ^= mask;
      (void)other->restore(b);  // accepted or refused; never a crash (asan checks)
    }
  }
  EXPECT_TRUE(other->restore(blob));
  EXPECT_EQ(other->save(), blob);
}

}  // namespace
}  // namespace minihv
