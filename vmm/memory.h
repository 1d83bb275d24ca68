// vmm/memory.h — guest RAM: the host mappings, the memslots, and the one checked accessor.
//
// Owns: allocating guest RAM (2 MiB-aligned, MADV_HUGEPAGE or hugetlb), the RAM regions around the
// 32-bit MMIO gap, translating guest-physical ranges to host pointers with bounds checks, and the
// VMM-side dirty bitmap that every device write marks (migration ORs it with KVM's dirty log).
// Must not know: KVM (the Vm registers the regions as memslots), devices, migration.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

struct MemoryRegion {
  uint64_t gpa = 0;       // guest-physical start
  uint64_t size = 0;      // bytes
  uint8_t* host = nullptr;
};

class GuestMemory {
public:
  enum class Backing { kThp, kHugetlb };

  // RAM of `size` bytes laid out around the MMIO gap (see layout.h).
  static Result<std::unique_ptr<GuestMemory>> create(uint64_t size, Backing backing = Backing::kThp);

  uint64_t size() const { return size_; }
  const std::vector<MemoryRegion>& regions() const { return regions_; }

  // Host pointer for [gpa, gpa+len), or nullptr when any byte is outside RAM or the range
  // straddles two regions. Every device access goes through this or the helpers below.
  uint8_t* host_ptr(uint64_t gpa, uint64_t len) const;
  bool contains(uint64_t gpa, uint64_t len) const { return host_ptr(gpa, len) != nullptr; }

  // Checked copies. write() also marks the pages in the device dirty bitmap.
  Status read(uint64_t gpa, void* dst, uint64_t len) const;
  Status write(uint64_t gpa, const void* src, uint64_t len);
  template <typename T> Result<T> read_obj(uint64_t gpa) const {
    T v{};
    MINIHV_TRY(read(gpa, &v, sizeof v));
    return v;
  }
  template <typename T> Status write_obj(uint64_t gpa, const T& v) { return write(gpa, &v, sizeof v); }

  // Marks [gpa, gpa+len) dirty for a device that wrote through host_ptr() directly (e.g. an
  // io_uring read straight into guest memory).
  void mark_dirty(uint64_t gpa, uint64_t len);
  // Device dirty bitmap: ORs bits into `bitmap` (one bit per 4 KiB page of `region`, as KVM's
  // dirty log) and clears them.
  void take_device_dirty(size_t region, std::span<uint64_t> bitmap);

  // Pages of `region` from `first_page` on (count = bits in `untouched` = 64 * its size) that hold
  // no memory, neither in RAM nor in swap: never written since the RAM was mapped or discarded, so
  // they read as zero. A set bit means untouched; an unknown page (no /proc/self/pagemap) is
  // reported touched. Pages past the region's end are reported touched.
  void untouched_pages(size_t region, uint64_t first_page, std::span<uint64_t> untouched) const;

  // Drops every page of RAM: all of it reads as zero afterwards and holds no host memory (an
  // incoming VM starts from empty RAM, whatever was built into it). Only while no vCPU runs.
  Status discard();

private:
  GuestMemory() = default;
  uint64_t size_ = 0;
  std::vector<Mapping> mappings_;
  std::vector<MemoryRegion> regions_;
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> device_dirty_;
  UniqueFd pagemap_;  // /proc/self/pagemap, for untouched_pages()
};

}  // namespace minihv
