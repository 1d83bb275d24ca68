// Reading KVM's dirty ring (vmm/dirty_log.h): the entries KVM published, in order from the fetch
// index, around the end of the ring, each handed back for reset exactly once.
#include "vmm/dirty_log.h"

#include <gtest/gtest.h>

#include <vector>

namespace minihv {
namespace {

constexpr uint32_t kSize = 8;

struct FakeRing {
  std::vector<kvm_dirty_gfn> e = std::vector<kvm_dirty_gfn>(kSize);
  uint32_t produced = 0;  // KVM's index
  void push(uint32_t slot, uint64_t offset) {
    kvm_dirty_gfn& g = e[produced++ % kSize];
    g.slot = slot;
    g.offset = offset;
    g.flags = KVM_DIRTY_GFN_F_DIRTY;
  }
  // What KVM_RESET_DIRTY_RINGS does to the entries the reader handed back.
  void reset() {
    for (auto& g : e)
      if (g.flags & KVM_DIRTY_GFN_F_RESET) g.flags = 0;
  }
};

std::vector<std::vector<uint64_t>> two_regions() { return {std::vector<uint64_t>(2), std::vector<uint64_t>(1)}; }

TEST(DirtyRing, TakesThePublishedEntriesAndMarksThemForReset) {
  FakeRing r;
  r.push(0, 3);
  r.push(1, 63);
  r.push(0, 64);
  auto bits = two_regions();
  uint32_t fetch = 0;
  EXPECT_EQ(drain_dirty_ring(r.e.data(), kSize, fetch, bits), 3u);
  EXPECT_EQ(fetch, 3u);
  EXPECT_EQ(bits[0][0], 1ull << 3);
  EXPECT_EQ(bits[0][1], 1ull);
  EXPECT_EQ(bits[1][0], 1ull << 63);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.e[i].flags, KVM_DIRTY_GFN_F_RESET) << i;
  EXPECT_EQ(drain_dirty_ring(r.e.data(), kSize, fetch, bits), 0u) << "nothing new was published";
}

TEST(DirtyRing, GoesAroundTheEndAndStopsAtAnEntryNotYetReset) {
  FakeRing r;
  auto bits = two_regions();
  uint32_t fetch = 0;
  for (int i = 0; i < 6; ++i) r.push(0, static_cast<uint64_t>(i));
  EXPECT_EQ(drain_dirty_ring(r.e.data(), kSize, fetch, bits), 6u);
  r.reset();
  for (int i = 0; i < 5; ++i) r.push(0, static_cast<uint64_t>(100 + i) % 128);  // entries 6, 7, 0, 1, 2
  bits = two_regions();
  EXPECT_EQ(drain_dirty_ring(r.e.data(), kSize, fetch, bits), 5u);
  EXPECT_EQ(fetch, 11u);
  EXPECT_EQ(bits[0][1], 0x1Full << (100 - 64));
  // Not reset yet by KVM: the reader must not take an entry twice.
  EXPECT_EQ(drain_dirty_ring(r.e.data(), kSize, fetch, bits), 0u);
}

TEST(DirtyRing, AnEntryOutsideTheRegionsIsSkippedNotWritten) {
  FakeRing r;
  r.push(7, 0);   // no such slot
  r.push(1, 64);  // past region 1's one word
  r.push(0, 5);
  auto bits = two_regions();
  uint32_t fetch = 0;
  EXPECT_EQ(drain_dirty_ring(r.e.data(), kSize, fetch, bits), 3u);
  EXPECT_EQ(bits[0][0], 1ull << 5);
  EXPECT_EQ(bits[1][0], 0u);
}

// Which log enable() takes: auto is the ring where hardware KVM offers one big enough, else the
// bitmap (PVM: not hardware); ring is refused where auto would not take it; bitmap is the bitmap.
TEST(DirtyLogChoice, AutoIsTheRingOnlyOnHardwareKvmThatOffersIt) {
  constexpr size_t kEnough = DirtyLog::kRingEntries * sizeof(kvm_dirty_gfn);
  EXPECT_TRUE(*ring_chosen(DirtyLogMode::kAuto, true, kEnough));
  EXPECT_TRUE(*ring_chosen(DirtyLogMode::kAuto, true, 16 * kEnough));
  EXPECT_FALSE(*ring_chosen(DirtyLogMode::kAuto, true, kEnough / 2));
  EXPECT_FALSE(*ring_chosen(DirtyLogMode::kAuto, true, 0));
  EXPECT_FALSE(*ring_chosen(DirtyLogMode::kAuto, false, kEnough));
  EXPECT_FALSE(*ring_chosen(DirtyLogMode::kBitmap, true, kEnough));
  EXPECT_TRUE(*ring_chosen(DirtyLogMode::kRing, true, kEnough));
  auto pvm = ring_chosen(DirtyLogMode::kRing, false, kEnough);
  ASSERT_FALSE(pvm);
  EXPECT_NE(pvm.message().find("needs hardware KVM"), std::string::npos) << pvm.message();
  auto small = ring_chosen(DirtyLogMode::kRing, true, kEnough / 2);
  ASSERT_FALSE(small);
  EXPECT_NE(small.message().find("no dirty ring of"), std::string::npos) << small.message();
}

}  // namespace
}  // namespace minihv
