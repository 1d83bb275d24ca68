// tests/unit/virtio_test_driver.h — a guest virtio driver in miniature, for the virtio unit tests.
//
// Plays the driver side against a real VirtioMmio (through bus_read/bus_write, as a vCPU would)
// and lays its rings and buffers out in a real GuestMemory. Knows nothing of the device's inside.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>

#include "vmm/devices/irq.h"
#include "vmm/devices/virtio_mmio.h"
#include "vmm/devices/virtio_spec.h"
#include "vmm/memory.h"

namespace minihv::testing {

class CountingIrq final : public IrqLine {
public:
  void trigger() override { count.fetch_add(1); }
  std::atomic<int> count{0};
};

// Where the test driver puts things in guest RAM (16 MiB guests). Queue q's rings sit at
// kDesc/kAvail/kUsed + q * kQueueStride: a 256-entry queue fits in one stride.
struct TestLayout {
  static constexpr uint64_t kDesc = 0x10000;      // descriptor table (up to 256 * 16 bytes)
  static constexpr uint64_t kAvail = 0x20000;
  static constexpr uint64_t kUsed = 0x30000;
  static constexpr uint64_t kQueueStride = 0x1000;
  static constexpr unsigned kMaxQueues = 8;
  static constexpr uint64_t kIndirect = 0x40000;  // indirect tables
  static constexpr uint64_t kHeaders = 0x50000;   // blk request headers, 16 bytes per slot
  static constexpr uint64_t kStatus = 0x60000;    // blk status bytes, one per slot
  static constexpr uint64_t kData = 0x100000;     // data buffers
};

// The driver side of one queue: where its rings are and how far the driver got.
struct TestRing {
  uint16_t size = 16;
  uint64_t desc = TestLayout::kDesc, avail = TestLayout::kAvail, used = TestLayout::kUsed;
  uint16_t avail_idx = 0;
  uint16_t seen_used = 0;
  unsigned next_desc = 0;
};

class VirtioTestDriver {
public:
  VirtioTestDriver(VirtioMmio& dev, GuestMemory& mem) : dev_(dev), mem_(mem) {}

  uint32_t rd(uint64_t off) {
    uint32_t v = 0;
    dev_.bus_read(off, reinterpret_cast<uint8_t*>(&v), 4);
    return v;
  }
  void wr(uint64_t off, uint32_t v) { dev_.bus_write(off, reinterpret_cast<const uint8_t*>(&v), 4); }
  void wr64(uint64_t lo_off, uint64_t v) {
    wr(lo_off, static_cast<uint32_t>(v));
    wr(lo_off + 4, static_cast<uint32_t>(v >> 32));
  }

  uint64_t device_features() {
    wr(virtio::mmio::kDeviceFeaturesSel, 0);
    uint64_t f = rd(virtio::mmio::kDeviceFeatures);
    wr(virtio::mmio::kDeviceFeaturesSel, 1);
    return f | uint64_t{rd(virtio::mmio::kDeviceFeatures)} << 32;
  }
  void add_status(uint32_t bits) { wr(virtio::mmio::kStatus, rd(virtio::mmio::kStatus) | bits); }
  uint32_t status() { return rd(virtio::mmio::kStatus); }

  // Reset, ACKNOWLEDGE, DRIVER, write `features`, FEATURES_OK; true if the device kept it.
  bool negotiate(uint64_t features) {
    wr(virtio::mmio::kStatus, 0);
    add_status(virtio::kStatusAcknowledge);
    add_status(virtio::kStatusDriver);
    wr(virtio::mmio::kDriverFeaturesSel, 0);
    wr(virtio::mmio::kDriverFeatures, static_cast<uint32_t>(features));
    wr(virtio::mmio::kDriverFeaturesSel, 1);
    wr(virtio::mmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
    add_status(virtio::kStatusFeaturesOk);
    features_ = features;
    return status() & virtio::kStatusFeaturesOk;
  }

  // Which queue the ring helpers below (desc, push_avail, kick, used_*, setup_queue) act on.
  void select(unsigned q) { q_ = q; }
  unsigned selected() const { return q_; }

  // Sets up the selected queue; its rings default to the queue's own slots of TestLayout.
  void setup_queue(uint16_t size) {
    const uint64_t off = TestLayout::kQueueStride * q_;
    setup_queue(size, TestLayout::kDesc + off, TestLayout::kAvail + off, TestLayout::kUsed + off);
  }
  void setup_queue(uint16_t size, uint64_t desc, uint64_t avail = TestLayout::kAvail,
                   uint64_t used = TestLayout::kUsed) {
    ring() = TestRing{size, desc, avail, used};
    // Fresh rings: a previous run's leftovers must not look like requests.
    std::vector<uint8_t> zero(TestLayout::kQueueStride, 0);
    (void)mem_.write(avail, zero.data(), zero.size());
    (void)mem_.write(used, zero.data(), zero.size());
    wr(virtio::mmio::kQueueSel, q_);
    wr(virtio::mmio::kQueueNum, size);
    wr64(virtio::mmio::kQueueDescLow, desc);
    wr64(virtio::mmio::kQueueDriverLow, avail);
    wr64(virtio::mmio::kQueueDeviceLow, used);
    wr(virtio::mmio::kQueueReady, 1);
  }

  // The whole initialisation; true when the device runs (DRIVER_OK and no NEEDS_RESET).
  bool init(uint64_t features, uint16_t size = 16) {
    if (!negotiate(features)) return false;
    setup_queue(size);
    add_status(virtio::kStatusDriverOk);
    const uint32_t s = status();
    return (s & virtio::kStatusDriverOk) && !(s & virtio::kStatusNeedsReset);
  }

  // --- rings ---
  void desc_at(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
               uint16_t next = 0) {
    uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    (void)mem_.write(table + 16ull * i, d, 16);
  }
  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    desc_at(ring().desc, i, addr, len, flags, next);
  }
  uint16_t alloc_desc() { return static_cast<uint16_t>(ring().next_desc++ % ring().size); }

  void set_avail_idx(uint16_t idx) {
    auto* p = reinterpret_cast<uint16_t*>(mem_.host_ptr(ring().avail + 2, 2));
    __atomic_store_n(p, idx, __ATOMIC_RELEASE);
    ring().avail_idx = idx;
  }
  void push_avail(uint16_t head) {
    TestRing& r = ring();
    (void)mem_.write_obj<uint16_t>(r.avail + 4 + 2ull * (r.avail_idx % r.size), head);
    set_avail_idx(static_cast<uint16_t>(r.avail_idx + 1));
  }
  void kick() { wr(virtio::mmio::kQueueNotify, q_); }

  uint16_t used_idx() {
    auto* p = reinterpret_cast<uint16_t*>(mem_.host_ptr(ring().used + 2, 2));
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
  }
  struct UsedElem {
    uint32_t id = 0, len = 0;
  };
  UsedElem used_elem(uint16_t i) {
    UsedElem e;
    const uint64_t at = ring().used + 4 + 8ull * (i % ring().size);
    e.id = *mem_.read_obj<uint32_t>(at);
    e.len = *mem_.read_obj<uint32_t>(at + 4);
    return e;
  }
  // Waits until the used idx reaches `target` (true) or `ms` pass (false).
  bool wait_used(uint16_t target, int ms = 5000) {
    return wait([&] { return used_idx() == target; }, ms);
  }
  bool wait_status_bit(uint32_t bit, int ms = 5000) {
    return wait([&] { return (status() & bit) != 0; }, ms);
  }
  template <typename F> static bool wait(F done, int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }

  // --- virtio-blk ---
  struct BlkDone {
    bool completed = false;
    uint8_t status = 0xff;
    uint32_t used_len = 0;
    uint32_t used_id = 0;
  };
  // Queues one request (header, optional data, status: three descriptors) without kicking;
  // returns its head.
  uint16_t blk_queue(uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t data_len,
                     bool device_writes) {
    const uint16_t h = alloc_desc();
    const uint64_t hdr = TestLayout::kHeaders + 16ull * h;
    const uint64_t st = TestLayout::kStatus + h;
    uint8_t header[16] = {};
    std::memcpy(header, &type, 4);
    std::memcpy(header + 8, &sector, 8);
    (void)mem_.write(hdr, header, 16);
    (void)mem_.write_obj<uint8_t>(st, 0xff);
    const uint16_t d = data_len ? alloc_desc() : 0;
    const uint16_t s = alloc_desc();
    const uint16_t data_flags =
        static_cast<uint16_t>(virtio::kDescFNext | (device_writes ? virtio::kDescFWrite : 0));
    desc(h, hdr, 16, virtio::kDescFNext, data_len ? d : s);
    if (data_len) desc(d, data_gpa, data_len, data_flags, s);
    desc(s, st, 1, virtio::kDescFWrite);
    push_avail(h);
    return h;
  }
  uint8_t blk_status_of(uint16_t head) { return *mem_.read_obj<uint8_t>(TestLayout::kStatus + head); }

  // One request, submitted and waited for.
  BlkDone blk(uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t data_len,
              bool device_writes, int ms = 5000) {
    const uint16_t head = blk_queue(type, sector, data_gpa, data_len, device_writes);
    return submit_and_wait(head, ms);
  }
  // Kicks, waits for the next used entry and reads the status byte of `head`.
  BlkDone submit_and_wait(uint16_t head, int ms = 5000) {
    kick();
    BlkDone r;
    const uint16_t target = static_cast<uint16_t>(ring().seen_used + 1);
    if (!wait_used(target, ms)) return r;
    const UsedElem e = used_elem(ring().seen_used);
    ring().seen_used = target;
    r.completed = true;
    r.used_id = e.id;
    r.used_len = e.len;
    r.status = blk_status_of(head);
    return r;
  }
  uint16_t& seen_used() { return ring().seen_used; }
  uint16_t avail_idx() const { return rings_[q_].avail_idx; }
  TestRing& ring() { return rings_[q_]; }
  GuestMemory& mem() { return mem_; }
  VirtioMmio& transport() { return dev_; }

private:
  VirtioMmio& dev_;
  GuestMemory& mem_;
  uint64_t features_ = 0;
  unsigned q_ = 0;
  std::array<TestRing, TestLayout::kMaxQueues> rings_{};
};

}  // namespace minihv::testing
