#include "vmm/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "vmm/layout.h"

namespace minihv {

namespace {

constexpr uint64_t kHugeAlign = 2 * layout::kMiB;

// Reserves size + 2 MiB, then trims so the kept range starts 2 MiB-aligned (THP needs that).
Result<Mapping> map_ram(uint64_t size, GuestMemory::Backing backing) {
  if (backing == GuestMemory::Backing::kHugetlb) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED)
      return Status::from_errno("mmap of " + std::to_string(size >> 20) +
                                " MiB hugetlb guest RAM (is /proc/sys/vm/nr_hugepages large enough?)");
    return Mapping(p, size);
  }
  const uint64_t reserve = size + kHugeAlign;
  void* p = mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return Status::from_errno("mmap of " + std::to_string(size >> 20) + " MiB guest RAM");
  auto base = reinterpret_cast<uintptr_t>(p);
  uintptr_t aligned = (base + kHugeAlign - 1) & ~(kHugeAlign - 1);
  if (aligned > base) munmap(p, aligned - base);
  uintptr_t end = aligned + size;
  if (base + reserve > end) munmap(reinterpret_cast<void*>(end), base + reserve - end);
  // THP makes the first touch of guest memory ~50x cheaper under shadow paging (PVM-FACTS.md).
  madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
  // Guest RAM never belongs in a core dump of the VMM.
  madvise(reinterpret_cast<void*>(aligned), size, MADV_DONTDUMP);
  return Mapping(reinterpret_cast<void*>(aligned), size);
}

}  // namespace

Result<std::unique_ptr<GuestMemory>> GuestMemory::create(uint64_t size, Backing backing) {
  if (size < 16 * layout::kMiB) return Status::invalid("guest memory must be at least 16 MiB");
  if (size % kHugeAlign) return Status::invalid("guest memory must be a multiple of 2 MiB");
  std::unique_ptr<GuestMemory> mem(new GuestMemory());
  mem->size_ = size;
  mem->pagemap_.reset(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));  // optional: untouched_pages()
  const uint64_t below = std::min<uint64_t>(size, layout::kMmioGapStart);
  const uint64_t above = size - below;
  struct Want { uint64_t gpa, size; };
  std::vector<Want> wants{{0, below}};
  if (above) wants.push_back({layout::kRamAbove4g, above});
  for (const Want& w : wants) {
    auto m = map_ram(w.size, backing);
    if (!m) return m.status();
    mem->regions_.push_back({w.gpa, w.size, m->bytes()});
    const uint64_t words = (w.size / layout::kPageSize + 63) / 64;
    mem->device_dirty_.emplace_back(new std::atomic<uint64_t>[words]());
    mem->mappings_.push_back(std::move(m).value());
  }
  return mem;
}

uint8_t* GuestMemory::host_ptr(uint64_t gpa, uint64_t len) const {
  for (const MemoryRegion& r : regions_) {
    if (gpa >= r.gpa && gpa - r.gpa < r.size) {
      const uint64_t off = gpa - r.gpa;
      if (len > r.size - off) return nullptr;
      return r.host + off;
    }
  }
  return nullptr;
}

Status GuestMemory::read(uint64_t gpa, void* dst, uint64_t len) const {
  const uint8_t* p = host_ptr(gpa, len);
  if (!p) return Status::error("guest read outside RAM");
  std::memcpy(dst, p, len);
  return Status::ok();
}

Status GuestMemory::write(uint64_t gpa, const void* src, uint64_t len) {
  uint8_t* p = host_ptr(gpa, len);
  if (!p) return Status::error("guest write outside RAM");
  std::memcpy(p, src, len);
  mark_dirty(gpa, len);
  return Status::ok();
}

void GuestMemory::mark_dirty(uint64_t gpa, uint64_t len) {
  if (len == 0) return;
  for (size_t i = 0; i < regions_.size(); ++i) {
    const MemoryRegion& r = regions_[i];
    if (gpa < r.gpa || gpa - r.gpa >= r.size) continue;
    const uint64_t first = (gpa - r.gpa) / layout::kPageSize;
    const uint64_t last = (std::min(gpa - r.gpa + len, r.size) - 1) / layout::kPageSize;
    for (uint64_t pg = first; pg <= last; ++pg)
      device_dirty_[i][pg / 64].fetch_or(uint64_t{1} << (pg % 64), std::memory_order_relaxed);
    return;
  }
}

void GuestMemory::untouched_pages(size_t region, uint64_t first_page, std::span<uint64_t> untouched) const {
  std::fill(untouched.begin(), untouched.end(), 0);
  if (!pagemap_.valid() || region >= regions_.size()) return;
  const MemoryRegion& r = regions_[region];
  const uint64_t pages = r.size / layout::kPageSize;
  if (first_page >= pages) return;
  const uint64_t n = std::min<uint64_t>(pages - first_page, untouched.size() * 64);
  // One 64-bit entry per page: bit 63 present in RAM, bit 62 in swap (Documentation/admin-guide/mm/pagemap.rst).
  constexpr uint64_t kPresent = uint64_t{1} << 63, kSwapped = uint64_t{1} << 62;
  constexpr uint64_t kChunk = 4096;
  uint64_t entries[kChunk];
  const uint64_t vpage = reinterpret_cast<uintptr_t>(r.host) / layout::kPageSize + first_page;
  for (uint64_t done = 0; done < n;) {
    const uint64_t want = std::min(kChunk, n - done);
    const ssize_t got = pread(pagemap_.get(), entries, want * sizeof(uint64_t),
                              static_cast<off_t>((vpage + done) * sizeof(uint64_t)));
    if (got <= 0) return;  // unknown from here on: touched
    const uint64_t k = static_cast<uint64_t>(got) / sizeof(uint64_t);
    for (uint64_t i = 0; i < k; ++i)
      if (!(entries[i] & (kPresent | kSwapped))) untouched[(done + i) / 64] |= uint64_t{1} << ((done + i) % 64);
    done += k;
  }
}

Status GuestMemory::discard() {
  for (const MemoryRegion& r : regions_)
    if (madvise(r.host, r.size, MADV_DONTNEED) != 0) return Status::from_errno("madvise(MADV_DONTNEED) of guest RAM");
  return Status::ok();
}

void GuestMemory::take_device_dirty(size_t region, std::span<uint64_t> bitmap) {
  const uint64_t words = (regions_.at(region).size / layout::kPageSize + 63) / 64;
  for (uint64_t w = 0; w < words && w < bitmap.size(); ++w)
    bitmap[w] |= device_dirty_[region][w].exchange(0, std::memory_order_relaxed);
}

}  // namespace minihv
