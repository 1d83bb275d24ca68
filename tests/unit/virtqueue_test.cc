// Virtqueue on its own: chain walking, every validation rule, used ring, suppression, state.
#include "vmm/devices/virtqueue.h"

#include <gtest/gtest.h>

#include <cstring>

#include "vmm/devices/virtio_spec.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

using namespace virtio;

constexpr uint64_t kDesc = 0x10000, kAvail = 0x20000, kUsed = 0x30000, kTable = 0x40000;
constexpr uint64_t kBuf = 0x100000;
constexpr uint16_t kSize = 16;
constexpr uint64_t kRam = 16 * layout::kMiB;

class VirtqueueTest : public ::testing::Test {
protected:
  void SetUp() override {
    auto m = GuestMemory::create(kRam);
    ASSERT_TRUE(m) << m.message();
    mem_ = std::move(*m);
  }
  Status start(uint64_t features = kRingFeatures) {
    q_.set_size(kSize);
    q_.set_desc_gpa(kDesc);
    q_.set_driver_gpa(kAvail);
    q_.set_device_gpa(kUsed);
    q_.set_ready(true);
    return q_.activate(*mem_, features);
  }
  void desc_at(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
               uint16_t next = 0) {
    uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    ASSERT_TRUE(mem_->write(table + 16ull * i, d, 16));
  }
  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    desc_at(kDesc, i, addr, len, flags, next);
  }
  void publish(uint16_t head) {
    ASSERT_TRUE(mem_->write_obj<uint16_t>(kAvail + 4 + 2 * (avail_ % kSize), head));
    ++avail_;
    ASSERT_TRUE(mem_->write_obj<uint16_t>(kAvail + 2, avail_));
  }
  // Pops one chain and expects a broken chain for `why`.
  void expect_bad(QueueError why) {
    DescriptorChain c;
    EXPECT_EQ(q_.pop(c), Virtqueue::Pop::kBadChain);
    EXPECT_EQ(c.error, why) << queue_error_name(c.error);
  }

  std::unique_ptr<GuestMemory> mem_;
  Virtqueue q_{256};
  uint16_t avail_ = 0;
};

TEST_F(VirtqueueTest, EmptyQueuePopsNothing) {
  ASSERT_TRUE(start());
  DescriptorChain c;
  EXPECT_EQ(q_.pop(c), Virtqueue::Pop::kEmpty);
}

TEST_F(VirtqueueTest, PopsAReadThenWriteChain) {
  ASSERT_TRUE(start());
  desc(3, kBuf, 16, kDescFNext, 7);
  desc(7, kBuf + 0x1000, 512, kDescFNext | kDescFWrite, 1);
  desc(1, kBuf + 0x2000, 1, kDescFWrite);
  publish(3);
  DescriptorChain c;
  ASSERT_EQ(q_.pop(c), Virtqueue::Pop::kChain);
  EXPECT_EQ(c.head, 3);
  ASSERT_EQ(c.buffers.size(), 3u);
  EXPECT_FALSE(c.buffers[0].writable);
  EXPECT_TRUE(c.buffers[1].writable);
  EXPECT_EQ(c.buffers[1].gpa, kBuf + 0x1000);
  EXPECT_EQ(c.buffers[1].host, mem_->host_ptr(kBuf + 0x1000, 512));
  EXPECT_EQ(c.readable_bytes(), 16u);
  EXPECT_EQ(c.writable_bytes(), 513u);
  EXPECT_EQ(q_.pop(c), Virtqueue::Pop::kEmpty);
}

TEST_F(VirtqueueTest, RejectsBufferOutsideRam) {
  ASSERT_TRUE(start());
  desc(0, kBuf, 16, kDescFNext, 1);
  desc(1, kRam - 8, 16, kDescFWrite);  // straddles the end of RAM
  publish(0);
  expect_bad(QueueError::kDescOutsideRam);
  desc(2, layout::kMmioGapStart, 4, 0);  // MMIO is never a buffer
  publish(2);
  expect_bad(QueueError::kDescOutsideRam);
}

TEST_F(VirtqueueTest, RejectsLengthThatWrapsTheAddressSpace) {
  ASSERT_TRUE(start());
  desc(0, ~uint64_t{0} - 0xff, 0x1000, 0);
  publish(0);
  expect_bad(QueueError::kDescOutsideRam);
}

TEST_F(VirtqueueTest, RejectsDescriptorLoop) {
  ASSERT_TRUE(start());
  desc(0, kBuf, 16, kDescFNext, 1);
  desc(1, kBuf, 16, kDescFNext, 0);
  publish(0);
  expect_bad(QueueError::kChainTooLong);
}

TEST_F(VirtqueueTest, RejectsNextOutOfRange) {
  ASSERT_TRUE(start());
  desc(0, kBuf, 16, kDescFNext, kSize);
  publish(0);
  expect_bad(QueueError::kNextOutOfRange);
}

TEST_F(VirtqueueTest, RejectsReadableAfterWritable) {
  ASSERT_TRUE(start());
  desc(0, kBuf, 16, kDescFNext | kDescFWrite, 1);
  desc(1, kBuf, 16, 0);
  publish(0);
  expect_bad(QueueError::kReadAfterWrite);
}

TEST_F(VirtqueueTest, FlattensAnIndirectTable) {
  ASSERT_TRUE(start());
  desc_at(kTable, 0, kBuf, 16, kDescFNext, 2);
  desc_at(kTable, 2, kBuf + 0x1000, 4096, kDescFNext | kDescFWrite, 1);
  desc_at(kTable, 1, kBuf + 0x3000, 1, kDescFWrite);
  desc(5, kTable, 3 * 16, kDescFIndirect);
  publish(5);
  DescriptorChain c;
  ASSERT_EQ(q_.pop(c), Virtqueue::Pop::kChain) << queue_error_name(c.error);
  EXPECT_EQ(c.head, 5);
  ASSERT_EQ(c.buffers.size(), 3u);
  EXPECT_EQ(c.buffers[1].len, 4096u);
  EXPECT_EQ(c.buffers[2].gpa, kBuf + 0x3000);
}

TEST_F(VirtqueueTest, RejectsIndirectWithoutTheFeature) {
  ASSERT_TRUE(start(kFVersion1));
  desc_at(kTable, 0, kBuf, 16, 0);
  desc(0, kTable, 16, kDescFIndirect);
  publish(0);
  expect_bad(QueueError::kIndirectNotNegotiated);
}

TEST_F(VirtqueueTest, RejectsIndirectTableOutsideRam) {
  ASSERT_TRUE(start());
  desc(0, kRam - 16, 32, kDescFIndirect);
  publish(0);
  expect_bad(QueueError::kIndirectOutsideRam);
}

TEST_F(VirtqueueTest, RejectsNestedIndirect) {
  ASSERT_TRUE(start());
  desc_at(kTable, 0, kTable + 0x100, 16, kDescFIndirect);
  desc(0, kTable, 16, kDescFIndirect);
  publish(0);
  expect_bad(QueueError::kNestedIndirect);
}

TEST_F(VirtqueueTest, RejectsBadIndirectSizesAndFlags) {
  ASSERT_TRUE(start());
  desc(0, kTable, 17, kDescFIndirect);
  publish(0);
  expect_bad(QueueError::kIndirectBadSize);
  desc(1, kTable, 0, kDescFIndirect);
  publish(1);
  expect_bad(QueueError::kIndirectBadSize);
  desc(2, kTable, 16 * 257, kDescFIndirect);  // more entries than the queue's maximum
  publish(2);
  expect_bad(QueueError::kIndirectBadSize);
  desc(3, kTable, 16, kDescFIndirect | kDescFNext, 4);
  publish(3);
  expect_bad(QueueError::kIndirectWithNext);
}

TEST_F(VirtqueueTest, RejectsLoopInsideIndirectTable) {
  ASSERT_TRUE(start());
  desc_at(kTable, 0, kBuf, 16, kDescFNext, 1);
  desc_at(kTable, 1, kBuf, 16, kDescFNext, 0);
  desc(0, kTable, 32, kDescFIndirect);
  publish(0);
  expect_bad(QueueError::kChainTooLong);
}

TEST_F(VirtqueueTest, RejectsChainLongerThanTheQueue) {
  ASSERT_TRUE(start());
  for (uint16_t i = 0; i < kSize; ++i) desc(i, kBuf, 16, kDescFNext, i + 1);  // last: next = 16
  publish(0);
  expect_bad(QueueError::kNextOutOfRange);
  // Direct descriptors leading to a full-size indirect table exceed the queue's maximum.
  for (uint16_t i = 0; i < 256; ++i) desc_at(kTable, i, kBuf, 16, i < 255 ? kDescFNext : 0, i + 1);
  desc(0, kBuf, 16, kDescFNext, 1);
  desc(1, kTable, 256 * 16, kDescFIndirect);
  publish(0);
  expect_bad(QueueError::kChainTooLong);
}

TEST_F(VirtqueueTest, AvailIdxRunningTooFarAheadBreaksTheQueue) {
  ASSERT_TRUE(start());
  ASSERT_TRUE(mem_->write_obj<uint16_t>(kAvail + 2, kSize + 1));
  DescriptorChain c;
  EXPECT_EQ(q_.pop(c), Virtqueue::Pop::kBroken);
  EXPECT_EQ(q_.broken_reason(), QueueError::kAvailIdxJump);
  ASSERT_TRUE(mem_->write_obj<uint16_t>(kAvail + 2, 0));
  EXPECT_EQ(q_.pop(c), Virtqueue::Pop::kBroken);  // stays broken until reset
}

TEST_F(VirtqueueTest, HeadOutOfRangeBreaksTheQueue) {
  ASSERT_TRUE(start());
  publish(kSize);
  DescriptorChain c;
  EXPECT_EQ(q_.pop(c), Virtqueue::Pop::kBroken);
  EXPECT_EQ(q_.broken_reason(), QueueError::kHeadOutOfRange);
}

TEST_F(VirtqueueTest, AddUsedWritesTheRingAndMarksItDirty) {
  ASSERT_TRUE(start());
  std::vector<uint64_t> bitmap(kRam / layout::kPageSize / 64, 0);
  mem_->take_device_dirty(0, bitmap);  // clear
  std::fill(bitmap.begin(), bitmap.end(), 0);
  q_.add_used(9, 513);
  EXPECT_EQ(*mem_->read_obj<uint16_t>(kUsed + 2), 1);
  EXPECT_EQ(*mem_->read_obj<uint32_t>(kUsed + 4), 9u);
  EXPECT_EQ(*mem_->read_obj<uint32_t>(kUsed + 8), 513u);
  mem_->take_device_dirty(0, bitmap);
  const uint64_t page = kUsed / layout::kPageSize;
  EXPECT_TRUE(bitmap[page / 64] & (uint64_t{1} << (page % 64)));
}

TEST_F(VirtqueueTest, NoInterruptFlagSuppressesNotification) {
  ASSERT_TRUE(start(kFRingIndirectDesc));
  q_.add_used(0, 1);
  EXPECT_TRUE(q_.should_notify());
  ASSERT_TRUE(mem_->write_obj<uint16_t>(kAvail, kAvailFNoInterrupt));
  q_.add_used(1, 1);
  EXPECT_FALSE(q_.should_notify());
}

TEST_F(VirtqueueTest, EventIdxNotifiesOnlyWhenUsedEventIsCrossed) {
  ASSERT_TRUE(start());
  const uint64_t used_event = kAvail + 4 + 2 * kSize;
  ASSERT_TRUE(mem_->write_obj<uint16_t>(used_event, 2));  // "interrupt me after entry 2"
  q_.add_used(0, 1);
  EXPECT_TRUE(q_.should_notify());   // first notification is always sent
  q_.add_used(1, 1);                 // used idx 2: event 2 not yet passed
  EXPECT_FALSE(q_.should_notify());
  q_.add_used(2, 1);                 // used idx 3: passed
  EXPECT_TRUE(q_.should_notify());
  // An empty pop publishes avail_event so the driver kicks for the next buffer.
  desc(0, kBuf, 16, 0);
  publish(0);
  DescriptorChain c;
  ASSERT_EQ(q_.pop(c), Virtqueue::Pop::kChain);
  ASSERT_EQ(q_.pop(c), Virtqueue::Pop::kEmpty);
  EXPECT_EQ(*mem_->read_obj<uint16_t>(kUsed + 4 + 8 * kSize), 1);
}

TEST_F(VirtqueueTest, ActivateChecksRingsAndConfiguration) {
  q_.set_size(kSize);
  q_.set_desc_gpa(kRam - 16);  // table of 16 * 16 bytes does not fit
  q_.set_driver_gpa(kAvail);
  q_.set_device_gpa(kUsed);
  q_.set_ready(true);
  EXPECT_FALSE(q_.activate(*mem_, 0));
  q_.set_desc_gpa(kDesc + 8);  // misaligned
  EXPECT_FALSE(q_.activate(*mem_, 0));
  q_.set_desc_gpa(kDesc);
  q_.set_size(12);  // not a power of two
  EXPECT_FALSE(q_.activate(*mem_, 0));
  q_.set_size(kSize);
  q_.set_ready(false);
  EXPECT_FALSE(q_.activate(*mem_, 0));
  q_.set_ready(true);
  EXPECT_TRUE(q_.activate(*mem_, 0));
}

TEST_F(VirtqueueTest, StateRoundTripsAndContinuesWhereItStopped) {
  ASSERT_TRUE(start());
  desc(0, kBuf, 16, 0);
  publish(0);
  DescriptorChain c;
  ASSERT_EQ(q_.pop(c), Virtqueue::Pop::kChain);
  q_.add_used(0, 0);
  const VirtqueueState st = q_.save();
  EXPECT_EQ(st.last_avail_idx, 1);
  EXPECT_EQ(st.used_idx, 1);
  Virtqueue other(256);
  ASSERT_TRUE(other.restore(st));
  ASSERT_TRUE(other.activate(*mem_, kRingFeatures));
  EXPECT_EQ(other.pop(c), Virtqueue::Pop::kEmpty);
  publish(0);
  EXPECT_EQ(other.pop(c), Virtqueue::Pop::kChain);
  VirtqueueState bad = st;
  bad.size = 512;
  EXPECT_FALSE(other.restore(bad));
  bad.size = 24;
  EXPECT_FALSE(other.restore(bad));
  bad.size = 0;
  EXPECT_FALSE(other.restore(bad));  // ready with size 0
}

}  // namespace
}  // namespace minihv
