// virtio-net end to end: frames between a test driver's rings and a real tap, in both directions,
// mergeable RX buffers, quiesce/resume, saved state, self-announce and a tap deleted under the
// device. Hostile descriptor chains: virtio_net_hostile_test.cc.
#include "vmm/devices/virtio_net.h"

#include <gtest/gtest.h>


#include <bit>
#include <chrono>
#include <thread>

#include "tests/unit/virtio_net_fixture.h"
#include "vmm/devices/net_announce.h"
#include "vmm/devices/virtio_blob.h"

namespace minihv {
namespace {

using namespace testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kQuiet = 300ms;  // how long "nothing happens" is watched for

// --- identity ---

TEST_F(VirtioNetTest, OffersItsFeaturesAndConfig) {
  make();
  EXPECT_EQ(drv_->rd(mmio::kDeviceId), kDeviceId);
  const uint64_t f = drv_->device_features();
  for (uint64_t bit : {kFVersion1, kFRingIndirectDesc, kFRingEventIdx, kFMac, kFStatus, kFMrgRxbuf, kFCtrlVq,
                       kFGuestAnnounce, kFCsum, kFHostTso4, kFHostTso6, kFHostEcn})
    EXPECT_TRUE(f & bit) << "feature bit " << std::countr_zero(bit);
  // Guest offloads come as a set, and only with a tap that takes them (this kernel's does).
  const uint64_t guest = kFGuestCsum | kFGuestTso4 | kFGuestTso6 | kFGuestEcn;
  EXPECT_EQ(f & guest, guest);
  uint8_t cfg[kCfgSize + 2];
  mmio_->bus_read(mmio::kConfig, cfg, sizeof cfg);
  EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), cfg + kCfgMac));
  EXPECT_EQ(le16_at({cfg, cfg + sizeof cfg}, kCfgStatus), kSLinkUp);
  EXPECT_EQ(le16_at({cfg, cfg + sizeof cfg}, kCfgMaxPairs), 1);
  EXPECT_EQ(cfg[kCfgSize], 0);  // beyond the config: zero
  EXPECT_TRUE(init(kNetWant | kFMrgRxbuf | guest));
}

// --- guest -> tap ---

TEST_F(VirtioNetTest, TxFrameComesOutOfTheTapByteExact) {
  start();
  const auto frame = test_frame(1000, 1, kPeerMac, kGuestMac);
  const uint16_t head = post_tx(0, frame);
  auto u = next_used(kTxQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, head);
  EXPECT_EQ(u->len, 0u);  // the device wrote nothing into a TX chain
  auto got = host_recv();
  ASSERT_TRUE(got) << "no frame on the tap";
  EXPECT_EQ(*got, frame);
  EXPECT_EQ(stats().tx_frames, 1u);
  EXPECT_EQ(stats().tx_bytes, frame.size());
  EXPECT_EQ(stats().errors, 0u);
}

TEST_F(VirtioNetTest, TxHeaderAndFrameInOneBuffer) {
  start();
  const auto frame = test_frame(200, 2, kPeerMac, kGuestMac);
  std::vector<uint8_t> all(kHdrSize, 0);
  all.insert(all.end(), frame.begin(), frame.end());
  ASSERT_TRUE(mem_->write(NetLayout::kTx, all.data(), all.size()));
  post(kTxQueue, {{NetLayout::kTx, static_cast<uint32_t>(all.size())}});
  ASSERT_TRUE(next_used(kTxQueue));
  auto got = host_recv();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, frame);
}

// --- tap -> guest ---

TEST_F(VirtioNetTest, HostFrameArrivesInAnRxBufferBehindAHeader) {
  start();
  const uint16_t head = post_rx(0, 2048);
  post_rx(1, 2048);
  const auto frame = test_frame(100, 3);
  ASSERT_TRUE(host_->send(frame));
  auto u = next_used(kRxQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, head);
  ASSERT_EQ(u->len, kHdrSize + frame.size());
  const auto b = guest(NetLayout::kRx, u->len);
  EXPECT_EQ(b[kHdrFlags], 0);
  EXPECT_EQ(b[kHdrGsoType], kGsoNone);
  EXPECT_EQ(le16_at(b, kHdrNumBuffers), 1);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), b.begin() + kHdrSize));
  EXPECT_EQ(stats().rx_frames, 1u);
  EXPECT_EQ(stats().rx_bytes, frame.size());
}

TEST_F(VirtioNetTest, MergeableBuffersCarryOneFrameInOneBufferWhenItFits) {
  start(kNetWant | kFMrgRxbuf);
  post_rx(0, 2048);
  const auto frame = test_frame(300, 4);
  ASSERT_TRUE(host_->send(frame));
  auto u = next_used(kRxQueue);
  ASSERT_TRUE(u);
  ASSERT_EQ(u->len, kHdrSize + frame.size());
  const auto b = guest(NetLayout::kRx, u->len);
  EXPECT_EQ(le16_at(b, kHdrNumBuffers), 1);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), b.begin() + kHdrSize));
}

TEST_F(VirtioNetTest, MergeableBuffersSpreadALargeFrameOverSeveralChains) {
  constexpr uint32_t kSmall = 256;
  start(kNetWant | kFMrgRxbuf);
  for (unsigned i = 0; i < 8; ++i) post_rx(i, kSmall);
  const auto frame = test_frame(1000, 5);  // 1012 bytes with the header: 4 chains, the last 244
  ASSERT_TRUE(host_->send(frame));
  std::vector<uint8_t> joined;
  for (unsigned i = 0; i < 4; ++i) {
    auto u = next_used(kRxQueue);
    ASSERT_TRUE(u) << "chain " << i;
    EXPECT_EQ(u->id, i);  // one-descriptor chains, heads 0, 1, 2, ...
    EXPECT_EQ(u->len, i < 3 ? kSmall : kHdrSize + frame.size() - 3 * kSmall) << "chain " << i;
    const auto part = guest(NetLayout::kRx + NetLayout::kBufStride * i, u->len);
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_EQ(used_idx(kRxQueue), 4);  // the rest stay the driver's
  ASSERT_EQ(joined.size(), kHdrSize + frame.size());
  EXPECT_EQ(le16_at(joined, kHdrNumBuffers), 4);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), joined.begin() + kHdrSize));
  // The next frame starts in the fifth chain.
  ASSERT_TRUE(host_->send(test_frame(60, 6)));
  auto u = next_used(kRxQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, 4u);
}

TEST_F(VirtioNetTest, AFrameWaitsForBuffersAndArrivesAfterTheKick) {
  for (uint64_t mrg : {uint64_t{0}, kFMrgRxbuf}) {
    SCOPED_TRACE(mrg ? "mergeable" : "one buffer");
    if (!mmio_) make();
    ASSERT_TRUE(init(kNetWant | mrg));
    const auto frame = test_frame(500, 7);
    ASSERT_TRUE(host_->send(frame));
    std::this_thread::sleep_for(kQuiet);
    EXPECT_EQ(used_idx(kRxQueue), 0);
    EXPECT_EQ(stats().rx_dropped, 0u);
    // Mergeable: too little room first (one 256-byte chain) keeps the frame waiting too.
    if (mrg) {
      post_rx(0, 256);
      std::this_thread::sleep_for(kQuiet);
      EXPECT_EQ(used_idx(kRxQueue), 0);
    }
    post_rx(1, 2048);
    auto u = next_used(kRxQueue);
    ASSERT_TRUE(u);
    EXPECT_EQ(stats().rx_dropped, 0u);
    if (!mrg) {
      EXPECT_EQ(u->len, kHdrSize + frame.size());
      EXPECT_TRUE(std::equal(frame.begin(), frame.end(), guest(NetLayout::kRx + NetLayout::kBufStride, u->len).begin() + kHdrSize));
    } else {
      EXPECT_EQ(u->len, 256u);  // the first chain the frame waited with, then the rest
      auto v = next_used(kRxQueue);
      ASSERT_TRUE(v);
      EXPECT_EQ(v->len, kHdrSize + frame.size() - 256);
    }
  }
}

// --- quiesce / resume ---

TEST_F(VirtioNetTest, QuiesceStopsTxAndRxUntilResume) {
  start();
  ASSERT_TRUE(mmio_->device().quiesce());
  const auto out = test_frame(150, 8, kPeerMac, kGuestMac);
  post_tx(0, out);
  post_rx(0, 2048);
  const auto in = test_frame(160, 9);
  ASSERT_TRUE(host_->send(in));
  EXPECT_FALSE(host_recv(kEtherTypeTest, 300)) << "a quiesced device sent a frame";
  EXPECT_EQ(used_idx(kTxQueue), 0);
  EXPECT_EQ(used_idx(kRxQueue), 0);
  mmio_->device().resume();
  // resume() returns after one pass of the I/O thread: both were handled by then.
  EXPECT_EQ(used_idx(kTxQueue), 1);
  EXPECT_EQ(used_idx(kRxQueue), 1);
  auto got = host_recv();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, out);
  ASSERT_TRUE(next_used(kTxQueue));
  auto u = next_used(kRxQueue);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->len, kHdrSize + in.size());
}

TEST_F(VirtioNetTest, QuiescedBeforeActivationStaysQuiesced) {
  make();
  ASSERT_TRUE(mmio_->device().quiesce());
  ASSERT_TRUE(init());
  post_tx(0, test_frame(100, 10, kPeerMac, kGuestMac));
  EXPECT_FALSE(host_recv(kEtherTypeTest, 300));
  mmio_->device().resume();
  EXPECT_TRUE(host_recv());
}

// --- saved state ---

// One pair; version 2 carries the held frames (a count, then each length-prefixed), version 1 none.
std::vector<uint8_t> state_blob(const MacAddress& mac, uint8_t announce, uint32_t version = 2,
                                const std::vector<std::vector<uint8_t>>& held = {}) {
  return vnet_state_blob(mac, announce, version, 1, held);
}

// A frame as the tap gives it: a zero virtio header, then the Ethernet frame.
std::vector<uint8_t> with_header(const std::vector<uint8_t>& frame) {
  std::vector<uint8_t> f(kHdrSize, 0);
  f.insert(f.end(), frame.begin(), frame.end());
  return f;
}

constexpr MacAddress kOtherMac{0x02, 0x12, 0x34, 0x56, 0x78, 0x9a};

TEST_F(VirtioNetTest, SavedStateCarriesTheMac) {
  make();
  EXPECT_EQ(net_->save_state(), state_blob(kGuestMac, 0));
}

TEST_F(VirtioNetTest, RestoreAdoptsTheSavedMacWhenNoneWasGiven) {
  make(/*mac_fixed=*/false);
  ASSERT_TRUE(net_->restore_state(state_blob(kOtherMac, 0)));
  EXPECT_EQ(net_->mac(), kOtherMac);
  uint8_t cfg[6];
  mmio_->bus_read(mmio::kConfig + kCfgMac, cfg, 6);
  EXPECT_TRUE(std::equal(kOtherMac.begin(), kOtherMac.end(), cfg));
  EXPECT_EQ(net_->save_state(), state_blob(kOtherMac, 0));
}

TEST_F(VirtioNetTest, RestoreRefusesAnotherMacWhenOneWasGiven) {
  make(/*mac_fixed=*/true);
  auto s = net_->restore_state(state_blob(kOtherMac, 0));
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(format_mac(kGuestMac)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(format_mac(kOtherMac)), std::string::npos) << s.message();
  EXPECT_EQ(net_->mac(), kGuestMac);
  EXPECT_TRUE(net_->restore_state(state_blob(kGuestMac, 0)));  // the same one is fine
}

TEST_F(VirtioNetTest, RestoreRefusesGarbage) {
  make(/*mac_fixed=*/false);
  auto good = state_blob(kOtherMac, 0);
  std::vector<std::vector<uint8_t>> bad = {{}, {1, 2, 3}, state_blob(kOtherMac, 2), state_blob(kOtherMac, 0, 3)};
  // Held frames: too many, one shorter than a header, one longer than the largest frame.
  bad.push_back(state_blob(kOtherMac, 0, 2,
                           std::vector<std::vector<uint8_t>>(VirtioNet::kMaxHeldFrames + 1, with_header(test_frame(60, 1)))));
  bad.push_back(state_blob(kOtherMac, 0, 2, {std::vector<uint8_t>(kHdrSize - 1, 0)}));
  bad.push_back(state_blob(kOtherMac, 0, 2, {std::vector<uint8_t>(kHdrSize + NetWorker::kMaxFrame + 1, 0)}));
  auto cut = state_blob(kOtherMac, 0, 2, {with_header(test_frame(60, 1))});
  cut.pop_back();
  bad.push_back(cut);
  bad.push_back({good.begin(), good.end() - 1});  // short
  auto longer = good;
  longer.push_back(0);
  bad.push_back(longer);
  auto magic = good;
  magic[0] ^= 1;
  bad.push_back(magic);
  for (const auto& b : bad) EXPECT_FALSE(net_->restore_state(b)) << b.size() << " bytes";
  EXPECT_EQ(net_->mac(), kGuestMac);  // nothing of a refused blob was applied
}

TEST_F(VirtioNetTest, AVersionOneStateIsStillRead) {
  make(/*mac_fixed=*/false);
  ASSERT_TRUE(net_->restore_state(state_blob(kOtherMac, 0, 1)));
  EXPECT_EQ(net_->mac(), kOtherMac);
}

// --- frames held across a migration's switchover ---

// The source: what reached the tap after the pause is read by hold_arrivals(), goes with the
// state, and stays out of the guest while it is paused.
TEST_F(VirtioNetTest, FramesArrivingAfterThePauseAreHeldAndSaved) {
  start();
  post_rx(0, 2048);
  ASSERT_TRUE(mmio_->device().quiesce());
  const auto f1 = test_frame(100, 1), f2 = test_frame(1400, 2);
  ASSERT_TRUE(host_->send(f1));
  ASSERT_TRUE(host_->send(f2));
  net_->hold_arrivals();
  EXPECT_EQ(used_idx(kRxQueue), 0) << "a paused guest received a frame";
  // Another device (the destination) reads the state back to the same bytes: the frames are in it.
  const auto blob = net_->save_state();
  auto tap2 = ns_.run([&] { return Tap::open(tap_name_ + "d"); });
  ASSERT_TRUE(tap2) << tap2.message();
  auto other = VirtioNet::create(std::move(*tap2), kGuestMac, false);
  ASSERT_TRUE(other) << other.message();
  ASSERT_TRUE((*other)->restore_state(blob));
  EXPECT_EQ((*other)->save_state(), blob);
  EXPECT_NE(blob, state_blob(kGuestMac, 0)) << "no frame was held";
  EXPECT_GE(blob.size(), state_blob(kGuestMac, 0).size() + 2 * (4 + kHdrSize) + f1.size() + f2.size());
}

// The source again, when the migration fails: the held frames reach its own guest first, in order.
TEST_F(VirtioNetTest, HeldFramesReachTheGuestFirstWhenTheSourceResumes) {
  start();
  const auto slot_of = post_rx_slots(3);
  ASSERT_TRUE(mmio_->device().quiesce());
  const auto f1 = test_frame(100, 1), f2 = test_frame(200, 2), f3 = test_frame(300, 3);
  ASSERT_TRUE(host_->send(f1));
  ASSERT_TRUE(host_->send(f2));
  net_->hold_arrivals();
  ASSERT_TRUE(host_->send(f3));  // after the hold: still in the tap
  mmio_->device().resume();
  expect_received(slot_of, {&f1, &f2, &f3});
}

// The destination: frames restored with the state are delivered before the tap's, once it runs.
TEST_F(VirtioNetTest, RestoredFramesAreDeliveredBeforeTheTapsOnResume) {
  make(/*mac_fixed=*/false);
  ASSERT_TRUE(mmio_->device().quiesce());  // as an incoming VM's devices are, until it runs
  ASSERT_TRUE(init());
  const auto slot_of = post_rx_slots(3);
  const auto f1 = test_frame(120, 4), f2 = test_frame(240, 5), later = test_frame(90, 6);
  ASSERT_TRUE(net_->restore_state(state_blob(kGuestMac, 0, 2, {with_header(f1), with_header(f2)})));
  ASSERT_TRUE(host_->send(later));
  EXPECT_EQ(used_idx(kRxQueue), 0);
  mmio_->device().resume();
  expect_received(slot_of, {&f1, &f2, &later});
  EXPECT_EQ(net_->save_state(), state_blob(kGuestMac, 0)) << "delivered frames are not held any more";
}

TEST_F(VirtioNetTest, RestoredAnnounceFlagShowsInConfig) {
  make(false);
  ASSERT_TRUE(net_->restore_state(state_blob(kGuestMac, 1)));
  EXPECT_EQ(config_status(), kSLinkUp | kSAnnounce);
  EXPECT_EQ(net_->save_state(), state_blob(kGuestMac, 1));
}

// --- self-announce ---

// Collects the RARP frames the device puts on the tap for `window`, with their arrival times.
std::vector<std::pair<Clock::time_point, std::vector<uint8_t>>> collect_rarp(HostPort& host,
                                                                             std::chrono::milliseconds window) {
  std::vector<std::pair<Clock::time_point, std::vector<uint8_t>>> out;
  const auto end = Clock::now() + window;
  while (Clock::now() < end) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    auto f = host.recv(static_cast<int>(std::max<int64_t>(left.count(), 1)));
    if (f && ether_type(*f) == kEtherTypeRarp) out.emplace_back(Clock::now(), std::move(*f));
  }
  return out;
}

TEST_F(VirtioNetTest, AnnounceSendsFiveRarpRoundsOnQemusScheduleAndFlagsTheGuest) {
  start();
  const int irqs = irq_.count.load();
  const auto t0 = Clock::now();
  net_->announce();
  EXPECT_EQ(config_status(), kSLinkUp | kSAnnounce);
  EXPECT_TRUE(drv_->rd(mmio::kInterruptStatus) & mmio::kIntConfigChange);
  EXPECT_GT(irq_.count.load(), irqs);
  const auto frames = collect_rarp(*host_, 2500ms);
  ASSERT_EQ(frames.size(), kAnnounceRounds);
  const auto want = rarp_frame(kGuestMac);
  for (const auto& [when, f] : frames) EXPECT_TRUE(std::equal(want.begin(), want.end(), f.begin(), f.end()));
  EXPECT_LT(frames[0].first - t0, 200ms) << "the first round goes at once";
  for (unsigned i = 0; i + 1 < frames.size(); ++i) {
    const auto gap = frames[i + 1].first - frames[i].first;
    EXPECT_GT(gap, announce_gap(i) - 20ms) << "gap " << i;
    EXPECT_LT(gap, announce_gap(i) + 400ms) << "gap " << i;
  }
  EXPECT_EQ(stats().announcements, kAnnounceRounds);
  // The driver acknowledges: the flag goes.
  auto ack = control(kCtrlClassAnnounce, kCtrlAnnounceAck);
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlOk);
  EXPECT_EQ(config_status(), kSLinkUp);
}

// A migration's source pauses the guest while the series that began when the guest last arrived
// may still run: a round from the source after the destination announced would take the guest's
// frames back to the source. Quiesced, the device sends none; resumed, the rest follow.
TEST_F(VirtioNetTest, AQuiescedDeviceSendsNoAnnouncementUntilItResumes) {
  start();
  net_->announce();
  std::optional<std::vector<uint8_t>> first;
  while ((first = host_->recv(1000)) && ether_type(*first) != kEtherTypeRarp) {
  }
  ASSERT_TRUE(first) << "the first round goes at once";
  ASSERT_TRUE(net_->quiesce());  // the next round was due 50 ms later
  EXPECT_TRUE(collect_rarp(*host_, 900ms).empty()) << "rounds went out while the device was quiesced";
  net_->resume();
  EXPECT_EQ(collect_rarp(*host_, 2000ms).size(), kAnnounceRounds - 1);
  EXPECT_EQ(stats().announcements, kAnnounceRounds);
}

TEST_F(VirtioNetTest, AnnounceWithoutGuestAnnounceOnlySendsRarp) {
  start(kNetWant & ~kFGuestAnnounce);
  net_->announce();
  EXPECT_EQ(config_status(), kSLinkUp);
  EXPECT_FALSE(drv_->rd(mmio::kInterruptStatus) & mmio::kIntConfigChange);
  const auto frames = collect_rarp(*host_, 1500ms);
  EXPECT_EQ(frames.size(), kAnnounceRounds);
  auto ack = control(kCtrlClassAnnounce, kCtrlAnnounceAck);  // not negotiated: refused
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlErr);
}

TEST_F(VirtioNetTest, UnknownControlCommandIsRefused) {
  start();
  auto ack = control(0, 0);  // VIRTIO_NET_CTRL_RX: not offered
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlErr);
  EXPECT_TRUE(control(kCtrlClassAnnounce, kCtrlAnnounceAck).has_value());
}

// --- the tap goes away ---

TEST_F(VirtioNetTest, TapDeletedUnderARunningDeviceTakesTheLinkDown) {
  start();
  expect_tx_works(0);
  const int irqs = irq_.count.load();
  ASSERT_EQ(ns_.sh("ip link del " + tap_name_), 0);
  // The I/O thread sees the dead fd (POLLERR on the tap, or a failed write) and reports it once.
  post_tx(2, test_frame(100, 11, kPeerMac, kGuestMac));
  ASSERT_TRUE(next_used(kTxQueue));
  EXPECT_TRUE(drv_->wait([&] { return !(config_status() & kSLinkUp); }, 5000)) << "link still up";
  EXPECT_TRUE(drv_->rd(mmio::kInterruptStatus) & mmio::kIntConfigChange);
  EXPECT_GT(irq_.count.load(), irqs);
  EXPECT_FALSE(stats().link_up);
  const uint64_t dropped = stats().tx_dropped;
  EXPECT_GE(dropped, 1u);
  post_tx(3, test_frame(100, 12, kPeerMac, kGuestMac));
  ASSERT_TRUE(next_used(kTxQueue));
  EXPECT_EQ(stats().tx_dropped, dropped + 1);
  EXPECT_FALSE(drv_->status() & kStatusNeedsReset);
  // A driver that resets and starts over gets a running device with the link down.
  ASSERT_TRUE(init());
  EXPECT_EQ(config_status() & kSLinkUp, 0);
  post_tx(4, test_frame(100, 13, kPeerMac, kGuestMac));
  ASSERT_TRUE(next_used(kTxQueue));
  EXPECT_EQ(stats().tx_dropped, dropped + 2);
}

}  // namespace
}  // namespace minihv
