#include "vmm/boot/e820.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "vmm/layout.h"

namespace minihv::boot {
namespace {

using layout::kGiB;
using layout::kMiB;

// The regions GuestMemory::create makes for `size` bytes (the boot code only reads gpa/size).
std::vector<MemoryRegion> regions_for(uint64_t size) {
  const uint64_t below = std::min(size, layout::kMmioGapStart);
  std::vector<MemoryRegion> r{{0, below, nullptr}};
  if (size > below) r.push_back({layout::kRamAbove4g, size - below, nullptr});
  return r;
}

TEST(BootE820, SixtyFourMiB) {
  const auto map = build_e820(regions_for(64 * kMiB));
  const std::vector<E820Entry> want{
      {0, layout::kEbdaStart, E820Type::kRam},
      {layout::kEbdaStart, layout::kHighMem - layout::kEbdaStart, E820Type::kReserved},
      {layout::kHighMem, 63 * kMiB, E820Type::kRam},
  };
  EXPECT_EQ(map, want);
}

TEST(BootE820, ThreeGiBStopsAtTheMmioGap) {
  const auto map = build_e820(regions_for(3 * kGiB));
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[2].addr, layout::kHighMem);
  EXPECT_EQ(map[2].addr + map[2].size, layout::kMmioGapStart);
  EXPECT_EQ(map[2].type, E820Type::kRam);
}

TEST(BootE820, FiveGiBContinuesAboveFourGiB) {
  const auto map = build_e820(regions_for(5 * kGiB));
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(map[2].addr + map[2].size, layout::kMmioGapStart);
  EXPECT_EQ(map[3].addr, layout::kRamAbove4g);
  EXPECT_EQ(map[3].size, 5 * kGiB - layout::kMmioGapStart);
  EXPECT_EQ(map[3].type, E820Type::kRam);
  uint64_t ram = 0;
  for (const E820Entry& e : map)
    if (e.type == E820Type::kRam) ram += e.size;
  EXPECT_EQ(ram, 5 * kGiB - (layout::kHighMem - layout::kEbdaStart));
}

TEST(BootE820, MatchesRealGuestMemory) {
  auto mem = GuestMemory::create(5 * kGiB);
  ASSERT_TRUE(mem) << mem.message();
  EXPECT_EQ(build_e820((*mem)->regions()), build_e820(regions_for(5 * kGiB)));
}

}  // namespace
}  // namespace minihv::boot
