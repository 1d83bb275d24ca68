// virtio-net multi-queue (VIRTIO 1.2 §5.1.6.5.5): MQ offered only with a multi-queue tap, the
// queue layout with and without MQ, VQ_PAIRS_SET's limits, only pair 0 moving frames until the
// driver sets more, each pair on its own tap queue both ways, quiesce over every pair, the active
// pair count in the saved state, and a tap that is not multi_queue.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <thread>

#include "tests/unit/virtio_net_fixture.h"
#include "vmm/devices/virtio_blob.h"

namespace minihv {
namespace {

using namespace testing;
using namespace std::chrono_literals;

constexpr auto kQuiet = 300ms;  // how long "nothing happens" is watched for
constexpr uint64_t kMqWant = kNetWant | kFMq;
constexpr unsigned kPairs = 2;
constexpr unsigned kRx1 = rx_queue(1), kTx1 = tx_queue(1);
constexpr unsigned kRx1Slots = 8;  // RX slots 0-7 are pair 0's, 8-15 pair 1's

std::vector<uint8_t> le16(unsigned v) { return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)}; }

// An IPv4/UDP frame from `src`:`sport` to `dst`:`dport`: the tap's queue steering hashes its
// addresses and ports (symmetrically: the answer of a flow hashes like the flow).
std::vector<uint8_t> udp_frame(uint8_t src, uint16_t sport, uint8_t dst, uint16_t dport, const MacAddress& to,
                               const MacAddress& from) {
  constexpr size_t kIp = 20, kUdp = 8, kPayload = 32;
  std::vector<uint8_t> f(kEthHeader + kIp + kUdp + kPayload, 0);
  std::copy(to.begin(), to.end(), f.begin());
  std::copy(from.begin(), from.end(), f.begin() + 6);
  f[12] = 0x08;  // IPv4
  uint8_t* ip = f.data() + kEthHeader;
  const size_t ip_len = kIp + kUdp + kPayload;
  const uint8_t header[kIp] = {0x45, 0, static_cast<uint8_t>(ip_len >> 8), static_cast<uint8_t>(ip_len), 0, 1,
                               0x40, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, dst};
  std::copy(header, header + kIp, ip);
  uint32_t sum = 0;
  for (size_t i = 0; i < kIp; i += 2) sum += static_cast<uint32_t>(ip[i] << 8 | ip[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = static_cast<uint8_t>(~sum >> 8);
  ip[11] = static_cast<uint8_t>(~sum);
  uint8_t* udp = ip + kIp;
  const uint16_t udp_len = kUdp + kPayload;
  const uint8_t uh[kUdp] = {static_cast<uint8_t>(sport >> 8), static_cast<uint8_t>(sport), static_cast<uint8_t>(dport >> 8),
                            static_cast<uint8_t>(dport), static_cast<uint8_t>(udp_len >> 8), static_cast<uint8_t>(udp_len),
                            0, 0};
  std::copy(uh, uh + kUdp, udp);
  for (size_t i = 0; i < kPayload; ++i) udp[kUdp + i] = static_cast<uint8_t>(src + i);
  return f;
}

class VirtioNetMqTest : public VirtioNetTest {
protected:
  // A 2-pair device whose driver negotiated MQ and set `pairs` pairs.
  void start_mq(unsigned pairs = kPairs) {
    make_mq(kPairs);
    ASSERT_TRUE(init(kMqWant));
    if (pairs == 1) return;
    auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(pairs));
    ASSERT_TRUE(ack);
    ASSERT_EQ(*ack, kCtrlOk);
  }
  uint16_t max_pairs_in_config() {
    uint8_t cfg[kCfgSize];
    mmio_->bus_read(mmio::kConfig, cfg, sizeof cfg);
    return le16_at({cfg, cfg + sizeof cfg}, kCfgMaxPairs);
  }
  uint32_t queue_num_max(unsigned q) {
    drv_->wr(mmio::kQueueSel, q);
    return drv_->rd(mmio::kQueueNumMax);
  }
  // A frame of the guest on TX queue q (slot `slot`) comes out of the tap.
  void expect_tx_on(unsigned q, unsigned slot) {
    const auto frame = test_frame(128, static_cast<uint8_t>(slot + 60), kPeerMac, kGuestMac);
    post_tx(slot, frame, {}, q);
    ASSERT_TRUE(next_used(q)) << "TX queue " << q;
    auto got = host_recv();
    ASSERT_TRUE(got) << "no frame on the tap from TX queue " << q;
    EXPECT_EQ(*got, frame);
  }
};

// --- what is offered ---

TEST_F(VirtioNetMqTest, MqIsOfferedOnlyWithMoreThanOnePair) {
  make();
  EXPECT_FALSE(drv_->device_features() & kFMq);
  EXPECT_EQ(max_pairs_in_config(), 1);
  EXPECT_EQ(mmio_->num_queues(), 3u);
  EXPECT_EQ(queue_num_max(3), 0u);  // no such queue
}

TEST_F(VirtioNetMqTest, TwoPairsOfferMqAndFiveQueues) {
  make_mq(kPairs);
  EXPECT_TRUE(drv_->device_features() & kFMq);
  EXPECT_EQ(max_pairs_in_config(), kPairs);
  EXPECT_EQ(mmio_->num_queues(), 2 * kPairs + 1);
  EXPECT_EQ(queue_num_max(2 * kPairs), VirtioNet::kQueueSize);
  EXPECT_EQ(queue_num_max(2 * kPairs + 1), 0u);
}

// --- VQ_PAIRS_SET ---

TEST_F(VirtioNetMqTest, PairsSetTakesOneToMaxAndRefusesTheRest) {
  start_mq(1);
  const uint64_t errors = stats().errors;
  for (unsigned bad : {0u, kPairs + 1, 0x100u + 1}) {
    auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(bad));
    ASSERT_TRUE(ack);
    EXPECT_EQ(*ack, kCtrlErr) << bad << " pairs";
    EXPECT_EQ(net_->active_pairs(), 1u);
  }
  for (unsigned good : {kPairs, 1u}) {
    auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(good));
    ASSERT_TRUE(ack);
    EXPECT_EQ(*ack, kCtrlOk) << good << " pairs";
    EXPECT_EQ(net_->active_pairs(), good);
    EXPECT_EQ(stats().queue_pairs, good);
  }
  EXPECT_EQ(stats().errors, errors);  // well-formed refusals are not the driver's errors
}

// A driver that knows one pair finds the control queue right after it, and MQ commands are not
// its to send.
TEST_F(VirtioNetMqTest, WithoutMqTheControlQueueIsTheThirdAndPairsSetIsRefused) {
  make_mq(kPairs);
  ASSERT_TRUE(init(kNetWant));
  EXPECT_EQ(ctrlq_, kCtrlQueue);
  auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(1));
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlErr);
  ack = control(kCtrlClassAnnounce, kCtrlAnnounceAck);
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlOk);
  expect_tx_on(kTxQueue, 0);
}

TEST_F(VirtioNetMqTest, PairsSetCutShortIsRefusedAsTheDriversError) {
  start_mq(1);
  auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, {2});  // one byte of the u16
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlErr);
  EXPECT_EQ(stats().errors, 1u);
  EXPECT_EQ(net_->active_pairs(), 1u);
  ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(kPairs));  // a whole one still works
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, kCtrlOk);
}

// --- which pairs move frames ---

TEST_F(VirtioNetMqTest, OnlyPairZeroMovesFramesUntilTheDriverSetsMore) {
  start_mq(1);
  const auto frame = test_frame(128, 70, kPeerMac, kGuestMac);
  post_tx(1, frame, {}, kTx1);
  EXPECT_FALSE(host_recv(kEtherTypeTest, static_cast<int>(kQuiet.count()))) << "pair 1 sent before VQ_PAIRS_SET";
  EXPECT_EQ(used_idx(kTx1), 0);
  expect_tx_on(kTxQueue, 2);
  // The driver sets two pairs: pair 1 has looked at its ring before the answer came.
  auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(kPairs));
  ASSERT_TRUE(ack);
  ASSERT_EQ(*ack, kCtrlOk);
  EXPECT_EQ(used_idx(kTx1), 1);
  auto got = host_recv();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, frame);
}

TEST_F(VirtioNetMqTest, AfterPairsSetEveryTxQueueReachesTheTap) {
  start_mq();
  expect_tx_on(kTx1, 0);
  expect_tx_on(kTxQueue, 1);
  expect_tx_on(kTx1, 2);
  EXPECT_EQ(stats().tx_frames, 3u);
}

TEST_F(VirtioNetMqTest, BackToOnePairParksPairOne) {
  start_mq();
  expect_tx_on(kTx1, 0);
  auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(1));
  ASSERT_TRUE(ack);
  ASSERT_EQ(*ack, kCtrlOk);
  post_tx(1, test_frame(128, 71, kPeerMac, kGuestMac), {}, kTx1);
  EXPECT_FALSE(host_recv(kEtherTypeTest, static_cast<int>(kQuiet.count()))) << "a parked pair sent";
  expect_tx_on(kTxQueue, 2);
}

// With one pair in use the tap hands everything to queue 0: no frame waits on a queue nobody reads.
TEST_F(VirtioNetMqTest, WithOnePairEveryHostFrameReachesPairZero) {
  start_mq(1);
  for (unsigned i = 0; i < kRx1Slots; ++i) post_rx(i, 2048);
  for (unsigned i = 0; i < kRx1Slots; ++i)
    ASSERT_TRUE(host_->send(udp_frame(static_cast<uint8_t>(i + 1), static_cast<uint16_t>(1000 + i), 200, 7,
                                      kGuestMac, kPeerMac)));
  for (unsigned i = 0; i < kRx1Slots; ++i) ASSERT_TRUE(next_used(kRxQueue)) << "frame " << i;
}

TEST_F(VirtioNetMqTest, WithTwoPairsEveryHostFrameReachesSomeRxQueue) {
  start_mq();
  constexpr unsigned kFrames = 8;
  for (unsigned i = 0; i < kFrames; ++i) {
    post_rx(i, 2048);
    post_rx(kRx1Slots + i, 2048, true, kRx1);
  }
  for (unsigned i = 0; i < kFrames; ++i)
    ASSERT_TRUE(host_->send(udp_frame(static_cast<uint8_t>(i + 1), static_cast<uint16_t>(1000 + i), 200, 7,
                                      kGuestMac, kPeerMac)));
  EXPECT_TRUE(drv_->wait([&] { return used_idx(kRxQueue) + used_idx(kRx1) == kFrames; }, 5000))
      << used_idx(kRxQueue) << " on pair 0, " << used_idx(kRx1) << " on pair 1";
  EXPECT_EQ(stats().rx_frames, kFrames);
}

// The tap steers the answers of a flow to the queue the flow came from: a flow the guest sends on
// pair i is answered on pair i (tap queue i is pair i's, both ways).
TEST_F(VirtioNetMqTest, EachPairsFlowIsAnsweredOnThatPair) {
  start_mq();
  for (unsigned pair : {1u, 0u}) {
    SCOPED_TRACE("pair " + std::to_string(pair));
    const uint8_t guest_ip = static_cast<uint8_t>(10 + pair), peer_ip = 200;
    const auto sport = static_cast<uint16_t>(5000 + pair);
    const auto out = udp_frame(guest_ip, sport, peer_ip, 7, kPeerMac, kGuestMac);
    post_tx(pair, out, {}, tx_queue(pair));
    ASSERT_TRUE(next_used(tx_queue(pair)));
    auto got = host_recv(0x0800);
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, out);
    const unsigned slot = pair * kRx1Slots;
    post_rx(slot, 2048, true, rx_queue(pair));
    const uint16_t other = used_idx(rx_queue(1 - pair));
    ASSERT_TRUE(host_->send(udp_frame(peer_ip, 7, guest_ip, sport, kGuestMac, kPeerMac)));
    auto u = next_used(rx_queue(pair));
    ASSERT_TRUE(u) << "the answer did not come on the flow's pair";
    EXPECT_EQ(used_idx(rx_queue(1 - pair)), other) << "the answer came on the other pair";
  }
}

// --- quiesce and saved state ---

TEST_F(VirtioNetMqTest, QuiesceStopsEveryPairUntilResume) {
  start_mq();
  ASSERT_TRUE(mmio_->device().quiesce());
  const auto out = test_frame(150, 72, kPeerMac, kGuestMac);
  post_tx(0, out, {}, kTx1);
  EXPECT_FALSE(host_recv(kEtherTypeTest, static_cast<int>(kQuiet.count()))) << "a quiesced pair 1 sent";
  EXPECT_EQ(used_idx(kTx1), 0);
  mmio_->device().resume();
  EXPECT_EQ(used_idx(kTx1), 1);  // resume() returns after every pair's pass
  auto got = host_recv();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, out);
}

// A version-1 blob with `pairs` gets the count appended all the same: a malformed blob.
std::vector<uint8_t> state_blob(uint32_t version, uint8_t announce, std::optional<uint16_t> pairs) {
  auto b = vnet_state_blob(kGuestMac, announce, version, pairs);
  if (version == 1 && pairs) b.insert(b.end(), {static_cast<uint8_t>(*pairs), static_cast<uint8_t>(*pairs >> 8)});
  return b;
}

TEST_F(VirtioNetMqTest, SavedStateCarriesTheActivePairs) {
  start_mq();
  EXPECT_EQ(net_->save_state(), state_blob(2, 0, kPairs));
  auto ack = control(kCtrlClassMq, kCtrlMqVqPairsSet, le16(1));
  ASSERT_TRUE(ack);
  EXPECT_EQ(net_->save_state(), state_blob(2, 0, 1));
}

TEST_F(VirtioNetMqTest, OnePairDeviceSavesOnePair) {
  make();
  EXPECT_EQ(net_->save_state(), state_blob(2, 0, 1));
}

// The transport resets the device, restores its state, then activates it: the restored pairs run
// without a VQ_PAIRS_SET of the driver.
TEST_F(VirtioNetMqTest, RestoredPairsRunAfterTheMove) {
  start_mq();
  expect_tx_on(kTx1, 0);
  ASSERT_TRUE(mmio_->device().quiesce());
  const auto saved = mmio_->save();
  ASSERT_TRUE(mmio_->restore(saved));  // resets the device (back to one pair) first
  EXPECT_EQ(net_->active_pairs(), kPairs);
  mmio_->device().resume();
  expect_tx_on(kTx1, 1);
}

TEST_F(VirtioNetMqTest, RestoreReadsOldBlobsAsOnePairAndRefusesTooMany) {
  make_mq(kPairs);
  ASSERT_TRUE(net_->restore_state(state_blob(2, 0, kPairs)));
  EXPECT_EQ(net_->active_pairs(), kPairs);
  ASSERT_TRUE(net_->restore_state(state_blob(1, 0, std::nullopt)));
  EXPECT_EQ(net_->active_pairs(), 1u);
  for (uint16_t bad : {uint16_t{0}, uint16_t{kPairs + 1}})
    EXPECT_FALSE(net_->restore_state(state_blob(2, 0, bad))) << bad << " pairs";
  EXPECT_FALSE(net_->restore_state(state_blob(1, 0, kPairs))) << "version 1 has no pair count";
  EXPECT_FALSE(net_->restore_state(state_blob(2, 0, std::nullopt))) << "version 2 without one";
  EXPECT_EQ(net_->active_pairs(), 1u);
}

// --- the tap ---

TEST_F(VirtioNetMqTest, TapWithoutMultiQueueIsRefusedByName) {
  auto single = ns_.run([&] { return Tap::open(tap_name_); });  // exists while we hold it
  ASSERT_TRUE(single) << single.message();
  auto multi = ns_.run([&] { return Tap::open(tap_name_, "", kPairs); });
  ASSERT_FALSE(multi);
  EXPECT_TRUE(multi.status().is_invalid_input());
  EXPECT_NE(multi.message().find("tap " + tap_name_), std::string::npos) << multi.message();
  EXPECT_NE(multi.message().find("without multi_queue"), std::string::npos) << multi.message();
}

TEST_F(VirtioNetMqTest, MultiQueueTapHasAnFdPerPair) {
  auto tap = ns_.run([&] { return Tap::open(tap_name_, "", 3); });
  ASSERT_TRUE(tap) << tap.message();
  EXPECT_EQ(tap->queues(), 3u);
  EXPECT_TRUE(tap->attached());
  EXPECT_TRUE(tap->enable_queues(3));
  EXPECT_TRUE(tap->enable_queues(1));
  EXPECT_TRUE(tap->set_offloads(true, true, true, true));
}

// Before any driver runs, the host's frames all go to queue 0: none wait on a queue that a guest
// using one pair would never read.
TEST_F(VirtioNetMqTest, AFreshMultiQueueTapHandsEverythingToQueueZero) {
  auto tap = ns_.run([&] { return Tap::open(tap_name_, "", kPairs); });
  ASSERT_TRUE(tap) << tap.message();
  HostPort host(ns_, tap_name_);
  ASSERT_TRUE(host.valid());
  constexpr unsigned kFrames = 8;
  for (unsigned i = 0; i < kFrames; ++i)
    ASSERT_TRUE(host.send(udp_frame(static_cast<uint8_t>(i + 1), static_cast<uint16_t>(2000 + i), 200, 7, kGuestMac,
                                    kPeerMac)));
  std::this_thread::sleep_for(100ms);
  const auto frames_on = [&](unsigned q) {
    unsigned n = 0;
    std::vector<uint8_t> buf(kHdrSize + 2048);
    while (::read(tap->fd(q), buf.data(), buf.size()) > 0) ++n;
    return n;
  };
  EXPECT_EQ(frames_on(1), 0u);
  EXPECT_EQ(frames_on(0), kFrames);
}

}  // namespace
}  // namespace minihv
