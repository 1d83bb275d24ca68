#include "vmm/memory.h"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <vector>

#include "vmm/layout.h"

namespace minihv {
namespace {

using layout::kGiB;
using layout::kMiB;

TEST(GuestMemory, SmallGuestIsOneRegionBelowTheGap) {
  auto mem = GuestMemory::create(64 * kMiB);
  ASSERT_TRUE(mem) << mem.message();
  ASSERT_EQ((*mem)->regions().size(), 1u);
  EXPECT_EQ((*mem)->regions()[0].gpa, 0u);
  EXPECT_EQ((*mem)->regions()[0].size, 64 * kMiB);
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*mem)->regions()[0].host) % (2 * kMiB), 0u);
}

TEST(GuestMemory, LargeGuestSkipsTheMmioGap) {
  auto mem = GuestMemory::create(4 * kGiB);
  ASSERT_TRUE(mem) << mem.message();
  const auto& r = (*mem)->regions();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].gpa + r[0].size, layout::kMmioGapStart);
  EXPECT_EQ(r[1].gpa, layout::kRamAbove4g);
  EXPECT_EQ(r[0].size + r[1].size, 4 * kGiB);
  EXPECT_EQ((*mem)->host_ptr(layout::kMmioGapStart, 1), nullptr);
  EXPECT_NE((*mem)->host_ptr(layout::kRamAbove4g, 4096), nullptr);
}

TEST(GuestMemory, RejectsBadSizes) {
  EXPECT_FALSE(GuestMemory::create(1 * kMiB));
  EXPECT_FALSE(GuestMemory::create(64 * kMiB + 4096));
}

TEST(GuestMemory, AccessesOutsideRamFail) {
  auto mem = GuestMemory::create(16 * kMiB);
  ASSERT_TRUE(mem);
  GuestMemory& m = **mem;
  uint8_t buf[16] = {};
  EXPECT_TRUE(m.read(16 * kMiB - 16, buf, 16).is_ok());
  EXPECT_FALSE(m.read(16 * kMiB - 15, buf, 16).is_ok());
  EXPECT_FALSE(m.write(~uint64_t{0} - 4, buf, 16).is_ok());  // wraps: must not pass the check
  EXPECT_EQ(m.host_ptr(0, 16 * kMiB + 1), nullptr);
  EXPECT_NE(m.host_ptr(0, 16 * kMiB), nullptr);
}

TEST(GuestMemory, WritesMarkTheDeviceDirtyBitmap) {
  auto mem = GuestMemory::create(16 * kMiB);
  ASSERT_TRUE(mem);
  GuestMemory& m = **mem;
  const uint32_t v = 0xabcd;
  ASSERT_TRUE(m.write_obj(5 * 4096 + 4094, v).is_ok());  // straddles pages 5 and 6
  std::vector<uint64_t> bits(16 * kMiB / 4096 / 64);
  m.take_device_dirty(0, bits);
  EXPECT_EQ(bits[0], (uint64_t{1} << 5) | (uint64_t{1} << 6));
  std::vector<uint64_t> again(bits.size());
  m.take_device_dirty(0, again);
  EXPECT_EQ(again[0], 0u) << "taking the bitmap clears it";
  auto back = m.read_obj<uint32_t>(5 * 4096 + 4094);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, v);
}

}  // namespace
}  // namespace minihv

namespace minihv {
namespace {

// Untouched pages are known zero without being read (the full pass skips them); a write makes a
// page touched, discard() makes every page untouched again.
TEST(GuestMemory, UntouchedPagesAreThoseNeverWrittenOrDiscarded) {
  auto mem = GuestMemory::create(16 * layout::kMiB);
  ASSERT_TRUE(mem) << mem.message();
  // 4 KiB pages, so one write touches one page (THP would fault in 2 MiB at once).
  const MemoryRegion& r = (*mem)->regions()[0];
  ASSERT_EQ(madvise(r.host, r.size, MADV_NOHUGEPAGE), 0);
  std::vector<uint64_t> bits(2);
  (*mem)->untouched_pages(0, 0, bits);
  EXPECT_EQ(bits[0], ~uint64_t{0});
  EXPECT_EQ(bits[1], ~uint64_t{0});
  r.host[5 * layout::kPageSize + 17] = 1;
  r.host[70 * layout::kPageSize] = 1;
  (*mem)->untouched_pages(0, 0, bits);
  EXPECT_EQ(bits[0], ~(uint64_t{1} << 5));
  EXPECT_EQ(bits[1], ~(uint64_t{1} << 6));
  (*mem)->untouched_pages(0, 64, bits);  // from page 64 on
  EXPECT_EQ(bits[0], ~(uint64_t{1} << 6));
  ASSERT_TRUE((*mem)->discard());
  (*mem)->untouched_pages(0, 0, bits);
  EXPECT_EQ(bits[0], ~uint64_t{0});
  EXPECT_EQ(r.host[5 * layout::kPageSize + 17], 0);
  const uint64_t last = r.size / layout::kPageSize - 1;
  (*mem)->untouched_pages(0, last, bits);
  EXPECT_EQ(bits[0], uint64_t{1}) << "only the region's last page; what lies past its end is touched";
  EXPECT_EQ(bits[1], 0u);
}

}  // namespace
}  // namespace minihv
