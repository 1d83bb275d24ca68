// virtio-net against a hostile or broken driver: every bad chain is answered and counted, a broken
// ring asks for a reset, nothing crashes, and after reset + re-initialisation the device works.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "tests/unit/virtio_net_fixture.h"

namespace minihv {
namespace {

using namespace testing;
using namespace std::chrono_literals;

constexpr uint64_t kOutsideRam = kNetRam - 16;  // a 2 KiB buffer here runs off the end of RAM

class VirtioNetHostileTest : public VirtioNetTest {
protected:
  // Waits for the TX chain `head` to come back empty and checks it was counted and not sent.
  void expect_tx_rejected(uint16_t head) {
    auto u = next_used(kTxQueue);
    ASSERT_TRUE(u) << "bad TX chain never answered";
    EXPECT_EQ(u->id, head);
    EXPECT_EQ(u->len, 0u);
    EXPECT_EQ(stats().errors, 1u);
    EXPECT_EQ(stats().tx_frames, 0u);
    EXPECT_FALSE(host_recv(kEtherTypeTest, 200)) << "a refused frame reached the tap";
    EXPECT_FALSE(drv_->status() & kStatusNeedsReset);
  }
  // A broken ring: NEEDS_RESET with a configuration interrupt, the error counted.
  void expect_needs_reset() {
    EXPECT_TRUE(drv_->wait_status_bit(kStatusNeedsReset)) << "no NEEDS_RESET";
    EXPECT_TRUE(drv_->rd(mmio::kInterruptStatus) & mmio::kIntConfigChange);
  }
};

// --- transmit ---

TEST_F(VirtioNetHostileTest, TxChainShorterThanTheHeader) {
  start();
  const uint16_t head = post(kTxQueue, {{NetLayout::kTx, kHdrSize - 1}});
  expect_tx_rejected(head);
  EXPECT_EQ(stats().tx_dropped, 1u);
  expect_tx_works();
}

TEST_F(VirtioNetHostileTest, TxChainOfWritableBuffersOnly) {
  start();
  const uint16_t head = post(kTxQueue, {{NetLayout::kTx, 200, true}, {NetLayout::kTx + 0x1000, 200, true}});
  expect_tx_rejected(head);
  expect_tx_works();
}

TEST_F(VirtioNetHostileTest, TxGsoWithoutHostTsoNegotiated) {
  start();  // kNetWant: no HOST_TSO
  std::array<uint8_t, kHdrSize> hdr{};
  hdr[kHdrFlags] = kHdrFNeedsCsum;
  hdr[kHdrGsoType] = 1;  // VIRTIO_NET_HDR_GSO_TCPV4
  const uint16_t head = post_tx(0, test_frame(1000, 1, kPeerMac, kGuestMac), hdr);
  expect_tx_rejected(head);
  EXPECT_EQ(stats().tx_dropped, 1u);
  expect_tx_works();
}

TEST_F(VirtioNetHostileTest, TxHeaderTheTapRefusesIsDroppedNotFatal) {
  start(kNetWant | kFHostTso4);
  std::array<uint8_t, kHdrSize> hdr{};
  hdr[kHdrFlags] = kHdrFNeedsCsum;
  hdr[kHdrGsoType] = 1;
  hdr[2] = 0xff;  // hdr_len far beyond the frame
  hdr[3] = 0xff;
  hdr[6] = 0xf0;  // csum_start beyond the frame
  hdr[7] = 0xff;
  post_tx(0, test_frame(100, 2, kPeerMac, kGuestMac), hdr);
  auto u = next_used(kTxQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->len, 0u);
  EXPECT_FALSE(host_recv(kEtherTypeTest, 200));
  EXPECT_EQ(stats().tx_dropped, 1u);
  expect_tx_works();
}

TEST_F(VirtioNetHostileTest, TxBufferOutsideRam) {
  start();
  ASSERT_TRUE(mem_->write(NetLayout::kTxHdr, std::array<uint8_t, kHdrSize>{}.data(), kHdrSize));
  const uint16_t head = post(kTxQueue, {{NetLayout::kTxHdr, kHdrSize}, {kOutsideRam, 2048}});
  expect_tx_rejected(head);
  expect_tx_works();
}

TEST_F(VirtioNetHostileTest, TxDescriptorLoop) {
  start();
  drv_->select(kTxQueue);
  drv_->desc(0, NetLayout::kTxHdr, kHdrSize, kDescFNext, 1);
  drv_->desc(1, NetLayout::kTx, 100, kDescFNext, 0);  // back to the head
  drv_->push_avail(0);
  drv_->kick();
  expect_tx_rejected(0);
  drv_->ring().next_desc = 2;
  expect_tx_works();
}

TEST_F(VirtioNetHostileTest, TxAvailIdxJumpAsksForAReset) {
  start();
  drv_->select(kTxQueue);
  drv_->set_avail_idx(kNetQueueSize + 3);
  drv_->kick();
  expect_needs_reset();
  EXPECT_GE(stats().errors, 1u);
  expect_survives();
}

TEST_F(VirtioNetHostileTest, TxHeadOutOfRangeAsksForAReset) {
  start();
  drv_->select(kTxQueue);
  drv_->push_avail(kNetQueueSize + 1);
  drv_->kick();
  expect_needs_reset();
  expect_survives();
}

TEST_F(VirtioNetHostileTest, RingOutsideRamRefusesToStart) {
  make();
  ASSERT_TRUE(drv_->negotiate(kNetWant));
  for (unsigned q : {kRxQueue, kCtrlQueue}) {
    drv_->select(q);
    drv_->setup_queue(kNetQueueSize);
  }
  drv_->select(kTxQueue);
  drv_->setup_queue(kNetQueueSize, kNetRam - 64);  // descriptor table runs off the end of RAM
  drv_->add_status(kStatusDriverOk);
  expect_needs_reset();
  expect_survives();
}

TEST_F(VirtioNetHostileTest, NoReceiveQueueRefusesToStart) {
  make();
  ASSERT_TRUE(drv_->negotiate(kNetWant));
  drv_->select(kTxQueue);
  drv_->setup_queue(kNetQueueSize);
  drv_->add_status(kStatusDriverOk);
  expect_needs_reset();
  expect_survives();
}

// --- receive ---

TEST_F(VirtioNetHostileTest, RxChainOfReadableBuffersIsAnsweredAndSkipped) {
  for (uint64_t mrg : {uint64_t{0}, kFMrgRxbuf}) {
    SCOPED_TRACE(mrg ? "mergeable" : "one buffer");
    if (!mmio_) make();
    ASSERT_TRUE(init(kNetWant | mrg));
    const uint64_t errors = stats().errors;
    const uint16_t bad = post(kRxQueue, {{NetLayout::kRx, 2048}});
    const uint16_t good = post_rx(1, 2048);
    const auto frame = test_frame(300, 3);
    ASSERT_TRUE(host_->send(frame));
    auto u = next_used(kRxQueue);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->id, bad);
    EXPECT_EQ(u->len, 0u);
    auto v = next_used(kRxQueue);
    ASSERT_TRUE(v) << "the frame never arrived behind the bad chain";
    EXPECT_EQ(v->id, good);
    ASSERT_EQ(v->len, kHdrSize + frame.size());
    const auto b = guest(NetLayout::kRx + NetLayout::kBufStride, v->len);
    EXPECT_EQ(le16_at(b, kHdrNumBuffers), 1);
    EXPECT_TRUE(std::equal(frame.begin(), frame.end(), b.begin() + kHdrSize));
    EXPECT_EQ(stats().errors, errors + 1);
  }
}

TEST_F(VirtioNetHostileTest, RxBufferOutsideRamIsAnsweredAndSkipped) {
  start();
  const uint16_t bad = post(kRxQueue, {{kOutsideRam, 2048, true}});
  const uint16_t good = post_rx(1, 2048);
  const auto frame = test_frame(300, 4);
  ASSERT_TRUE(host_->send(frame));
  auto u = next_used(kRxQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, bad);
  EXPECT_EQ(u->len, 0u);
  auto v = next_used(kRxQueue);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->id, good);
  EXPECT_EQ(v->len, kHdrSize + frame.size());
  EXPECT_EQ(stats().errors, 1u);
}

// A broken chain between the chains held for one merged frame: each chain comes back exactly once
// (a rewind over the broken one would hand it back twice and lose the one before it), and the
// frame arrives whole.
TEST_F(VirtioNetHostileTest, MergedRxWithABrokenChainBetweenHeldChains) {
  constexpr uint32_t kSmall = 256;
  start(kNetWant | kFMrgRxbuf);
  std::multiset<uint32_t> heads;
  heads.insert(post_rx(0, kSmall));
  heads.insert(post(kRxQueue, {{kOutsideRam, kSmall, true}}));
  const auto frame = test_frame(600, 5);  // 612 bytes with the header: three small chains
  ASSERT_TRUE(host_->send(frame));
  std::this_thread::sleep_for(200ms);  // the device holds the first chain and meets the broken one
  for (unsigned slot = 2; slot < 5; ++slot) heads.insert(post_rx(slot, kSmall));
  std::multiset<uint32_t> used;
  std::vector<uint8_t> joined;
  while (joined.size() < kHdrSize + frame.size()) {
    auto u = next_used(kRxQueue);
    ASSERT_TRUE(u) << "frame incomplete: " << joined.size() << " bytes";
    used.insert(u->id);
    if (u->len == 0) continue;
    // One descriptor per chain, handed out in order: head i is the buffer of slot i.
    const auto part = guest(NetLayout::kRx + NetLayout::kBufStride * u->id, u->len);
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_EQ(le16_at(joined, kHdrNumBuffers), 3);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), joined.begin() + kHdrSize));
  std::this_thread::sleep_for(100ms);
  while (auto u = next_used(kRxQueue, 0)) used.insert(u->id);
  EXPECT_EQ(used, heads) << "a chain came back twice or never";
  EXPECT_EQ(stats().errors, 1u);
}

// --- control queue ---

TEST_F(VirtioNetHostileTest, ControlChainWithoutAnAckByte) {
  start();
  const uint8_t cmd[2] = {kCtrlClassAnnounce, kCtrlAnnounceAck};
  ASSERT_TRUE(mem_->write(NetLayout::kCtrl, cmd, 2));
  const uint16_t head = post(kCtrlQueue, {{NetLayout::kCtrl, 2}});
  auto u = next_used(kCtrlQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, head);
  EXPECT_EQ(u->len, 0u);
  EXPECT_EQ(stats().errors, 1u);
  auto ack = control(kCtrlClassAnnounce, kCtrlAnnounceAck);  // a well-formed one still works
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlOk);
}

TEST_F(VirtioNetHostileTest, ControlChainTooShortForACommand) {
  start();
  const uint16_t head = post(kCtrlQueue, {{NetLayout::kCtrl, 1}, {NetLayout::kCtrl + 0x100, 1, true}});
  auto u = next_used(kCtrlQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, head);
  EXPECT_EQ(u->len, 0u);
  EXPECT_EQ(stats().errors, 1u);
}

}  // namespace
}  // namespace minihv
