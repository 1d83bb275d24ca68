// tests/unit/virtio_net_fixture.h — virtio-net end to end for the unit tests: a real tap in a
// private network namespace, the real device and its I/O threads, the real transport and guest
// memory, driven by VirtioTestDriver over its queues (three, or 2 per pair and control with
// make_mq()); the "network" is a packet socket on the tap (HostPort).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/net_test_netns.h"
#include "tests/unit/virtio_test_driver.h"
#include "vmm/devices/virtio_blob.h"
#include "vmm/devices/virtio_net.h"
#include "vmm/layout.h"

namespace minihv::testing {

using namespace virtio;
using namespace virtio::net;

constexpr uint64_t kNetRam = 16 * layout::kMiB;
constexpr uint16_t kNetQueueSize = 16;
constexpr MacAddress kGuestMac{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
constexpr MacAddress kPeerMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr uint16_t kEtherTypeTest = 0x88b5;  // IEEE 802 local experimental: nobody else's frames
constexpr uint16_t kEtherTypeRarp = 0x8035;
constexpr size_t kEthHeader = 14;
// What the tests negotiate unless they say otherwise: no mergeable buffers, no guest offloads.
constexpr uint64_t kNetWant = kFVersion1 | kRingFeatures | kFMac | kFStatus | kFCtrlVq | kFGuestAnnounce | kFCsum;

// Guest buffers: RX chains one per kBufStride slot, TX headers and frames, control commands.
struct NetLayout {
  static constexpr uint64_t kBufStride = 0x10000;  // holds the largest frame
  static constexpr uint64_t kRx = TestLayout::kData;                // 16 slots
  static constexpr uint64_t kTxHdr = TestLayout::kData + 0x200000;  // 16-byte slots
  static constexpr uint64_t kTx = TestLayout::kData + 0x300000;     // 16 slots
  static constexpr uint64_t kCtrl = TestLayout::kData + 0x500000;   // command, then ack at +0x100
};

// An Ethernet frame to the guest (or from it): test EtherType, payload bytes (seed + 7 i).
inline std::vector<uint8_t> test_frame(size_t len, uint8_t seed, const MacAddress& dst = kGuestMac,
                                       const MacAddress& src = kPeerMac) {
  std::vector<uint8_t> f(len);
  std::copy(dst.begin(), dst.end(), f.begin());
  std::copy(src.begin(), src.end(), f.begin() + 6);
  f[12] = kEtherTypeTest >> 8;
  f[13] = kEtherTypeTest & 0xff;
  for (size_t i = kEthHeader; i < len; ++i) f[i] = static_cast<uint8_t>(seed + 7 * i);
  return f;
}

// A "VNET" device state (docs/virtio.md): version 1 is mac and announce only; version 2 adds the
// active pair count (none written when `pairs` is empty: a malformed blob) and the held frames.
inline std::vector<uint8_t> vnet_state_blob(const MacAddress& mac, uint8_t announce, uint32_t version = 2,
                                            std::optional<uint16_t> pairs = 1,
                                            const std::vector<std::vector<uint8_t>>& held = {}) {
  virtio::BlobWriter w;
  w.put<uint32_t>(0x54454e56);  // "VNET"
  w.put<uint32_t>(version);
  for (uint8_t b : mac) w.put<uint8_t>(b);
  w.put<uint8_t>(announce);
  if (version < 2) return w.take();
  if (pairs) w.put<uint16_t>(*pairs);
  w.put<uint32_t>(static_cast<uint32_t>(held.size()));
  for (const auto& f : held) w.put_bytes(f);
  return w.take();
}

inline uint16_t le16_at(const std::vector<uint8_t>& b, size_t at) {
  return static_cast<uint16_t>(b[at] | b[at + 1] << 8);
}

inline uint16_t ether_type(const std::vector<uint8_t>& f) {
  return f.size() < kEthHeader ? 0 : static_cast<uint16_t>(f[12] << 8 | f[13]);
}

class VirtioNetTest : public ::testing::Test {
protected:
  struct Seg {
    uint64_t gpa;
    uint32_t len;
    bool writable = false;
  };
  using Used = VirtioTestDriver::UsedElem;

  void SetUp() override {
    ASSERT_TRUE(ns_.valid()) << "unshare(CLONE_NEWNET) failed (the unit tests run as root)";
    auto m = GuestMemory::create(kNetRam);
    ASSERT_TRUE(m) << m.message();
    mem_ = std::move(*m);
  }

  // Tap (created in the namespace), device, transport, driver and the host's packet socket.
  void make(bool mac_fixed = true, MacAddress mac = kGuestMac) {
    auto tap = ns_.run([&] { return Tap::open(tap_name_, "", pairs_); });
    ASSERT_TRUE(tap) << tap.message();
    host_ = std::make_unique<HostPort>(ns_, tap_name_);
    ASSERT_TRUE(host_->valid()) << "packet socket on " << tap_name_;
    auto net = VirtioNet::create(std::move(*tap), mac, mac_fixed);
    ASSERT_TRUE(net) << net.message();
    net_ = net->get();
    auto t = VirtioMmio::create(*mem_, irq_, std::move(*net));
    ASSERT_TRUE(t) << t.message();
    mmio_ = std::move(*t);
    drv_ = std::make_unique<VirtioTestDriver>(*mmio_, *mem_);
  }

  // A device of `pairs` queue pairs on a multi-queue tap.
  void make_mq(unsigned pairs) {
    pairs_ = pairs;
    make();
  }

  // Negotiates `features`, sets up the queues (with MQ all of them; without, the first pair and
  // the control queue after it, as a driver that knows one pair does), DRIVER_OK; true when the
  // device runs.
  bool init(uint64_t features = kNetWant, uint16_t size = kNetQueueSize) {
    if (!drv_->negotiate(features)) return false;
    const unsigned queues = features & kFMq ? 2 * pairs_ + 1 : kCtrlQueue + 1;
    ctrlq_ = queues - 1;
    for (unsigned q = 0; q < queues; ++q) {
      drv_->select(q);
      drv_->setup_queue(size);
    }
    drv_->add_status(kStatusDriverOk);
    const uint32_t s = drv_->status();
    return (s & kStatusDriverOk) && !(s & kStatusNeedsReset);
  }
  void start(uint64_t features = kNetWant, uint16_t size = kNetQueueSize) {
    make();
    ASSERT_TRUE(init(features, size));
  }

  // One chain of `segs` on queue q, made available (and kicked); returns its head.
  uint16_t post(unsigned q, std::initializer_list<Seg> segs, bool kick = true) {
    drv_->select(q);
    const uint16_t head = drv_->alloc_desc();
    uint16_t cur = head;
    size_t i = 0;
    for (const Seg& s : segs) {
      const bool last = ++i == segs.size();
      const uint16_t next = last ? 0 : drv_->alloc_desc();
      const uint16_t flags = static_cast<uint16_t>((last ? 0 : kDescFNext) | (s.writable ? kDescFWrite : 0));
      drv_->desc(cur, s.gpa, s.len, flags, next);
      cur = next;
    }
    drv_->push_avail(head);
    if (kick) drv_->kick();
    return head;
  }
  // The next used entry of queue q the test has not looked at yet, or nothing within `ms`.
  std::optional<Used> next_used(unsigned q, int ms = 5000) {
    drv_->select(q);
    const uint16_t seen = drv_->seen_used();
    if (!drv_->wait([&] { return drv_->used_idx() != seen; }, ms)) return std::nullopt;
    drv_->select(q);
    ++drv_->seen_used();
    return drv_->used_elem(seen);
  }
  uint16_t used_idx(unsigned q) {
    drv_->select(q);
    return drv_->used_idx();
  }

  // An RX buffer in slot `slot` of `len` bytes, on queue q.
  uint16_t post_rx(unsigned slot, uint32_t len, bool kick = true, unsigned q = kRxQueue) {
    return post(q, {{NetLayout::kRx + NetLayout::kBufStride * slot, len, true}}, kick);
  }
  // RX buffers of 2048 bytes in slots 0..n-1; which slot each head is.
  std::map<uint16_t, unsigned> post_rx_slots(unsigned n) {
    std::map<uint16_t, unsigned> slot_of;
    for (unsigned slot = 0; slot < n; ++slot) slot_of[post_rx(slot, 2048)] = slot;
    return slot_of;
  }
  // The next used RX buffers (posted by post_rx_slots) hold `frames`, in this order, each behind a
  // header with num_buffers 1.
  void expect_received(const std::map<uint16_t, unsigned>& slot_of,
                       std::initializer_list<const std::vector<uint8_t>*> frames) {
    for (const auto* want : frames) {
      auto u = next_used(kRxQueue);
      ASSERT_TRUE(u);
      ASSERT_EQ(u->len, kHdrSize + want->size());
      const auto b = guest(NetLayout::kRx + slot_of.at(static_cast<uint16_t>(u->id)) * NetLayout::kBufStride, u->len);
      EXPECT_EQ(le16_at(b, kHdrNumBuffers), 1);
      EXPECT_TRUE(std::equal(want->begin(), want->end(), b.begin() + kHdrSize)) << "frame of " << want->size();
    }
  }
  // `frame` on TX queue q behind `hdr`, header and frame in separate buffers of slot `slot`.
  uint16_t post_tx(unsigned slot, const std::vector<uint8_t>& frame, std::array<uint8_t, kHdrSize> hdr = {},
                   unsigned q = kTxQueue) {
    const uint64_t h = NetLayout::kTxHdr + 16 * slot, d = NetLayout::kTx + NetLayout::kBufStride * slot;
    EXPECT_TRUE(mem_->write(h, hdr.data(), hdr.size()));
    EXPECT_TRUE(mem_->write(d, frame.data(), frame.size()));
    return post(q, {{h, kHdrSize}, {d, static_cast<uint32_t>(frame.size())}});
  }
  // A control command (class, command, then `data`) in one buffer, its ack byte in another;
  // returns the ack the device wrote.
  std::optional<uint8_t> control(uint8_t cls, uint8_t cmd, std::vector<uint8_t> data = {}) {
    data.insert(data.begin(), {cls, cmd});
    const uint64_t ack = NetLayout::kCtrl + 0x100;
    EXPECT_TRUE(mem_->write(NetLayout::kCtrl, data.data(), data.size()));
    EXPECT_TRUE(mem_->write_obj<uint8_t>(ack, 0xff));
    post(ctrlq_, {{NetLayout::kCtrl, static_cast<uint32_t>(data.size())}, {ack, 1, true}});
    auto u = next_used(ctrlq_);
    if (!u) return std::nullopt;
    EXPECT_EQ(u->len, 1u);
    return *mem_->read_obj<uint8_t>(ack);
  }

  // The next frame of EtherType `type` the device put on the tap (others are skipped).
  std::optional<std::vector<uint8_t>> host_recv(uint16_t type = kEtherTypeTest, int ms = 2000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto f = host_->recv(static_cast<int>(left.count()));
      if (f && ether_type(*f) == type) return f;
    }
  }

  uint16_t config_status() {
    uint16_t v = 0;
    mmio_->bus_read(mmio::kConfig + kCfgStatus, reinterpret_cast<uint8_t*>(&v), 2);
    return v;
  }
  std::vector<uint8_t> guest(uint64_t gpa, size_t n) {
    std::vector<uint8_t> b(n);
    EXPECT_TRUE(mem_->read(gpa, b.data(), n));
    return b;
  }
  VirtioNet::Stats stats() const { return net_->stats(); }

  // A frame on TX comes out of the tap: the device works (after whatever the test did to it).
  void expect_tx_works(unsigned slot = 0) {
    const auto frame = test_frame(128, static_cast<uint8_t>(slot + 40), kPeerMac, kGuestMac);
    post_tx(slot, frame);
    ASSERT_TRUE(next_used(kTxQueue));
    auto got = host_recv();
    ASSERT_TRUE(got) << "no frame on the tap";
    EXPECT_EQ(*got, frame);
  }
  // After a hostile chain: NEEDS_RESET was raised or not; either way reset + re-init gives a
  // working device.
  void expect_survives(uint64_t features = kNetWant) {
    ASSERT_TRUE(init(features));
    expect_tx_works(1);
  }

  TestNetns ns_;
  unsigned pairs_ = 1;                // the tap's queues: the device's queue pairs
  unsigned ctrlq_ = kCtrlQueue;       // where init() put the control queue
  const std::string tap_name_ = "mhvt" + std::to_string(::getpid());
  std::unique_ptr<GuestMemory> mem_;
  CountingIrq irq_;
  std::unique_ptr<HostPort> host_;
  VirtioNet* net_ = nullptr;
  std::unique_ptr<VirtioMmio> mmio_;
  std::unique_ptr<VirtioTestDriver> drv_;
};

}  // namespace minihv::testing
