// The receiver's page-batch decoder: every record is checked before a byte of guest memory is touched.
#include <lz4.h>

#include <cstring>

#include "migrate/codec.h"
#include "migrate/wire.h"

namespace minihv::migrate {

namespace {

// Host pointer for [gpa, gpa+len) inside one region, or nullptr.
uint8_t* ram_ptr(std::span<const MemoryRegion> ram, uint64_t gpa, uint64_t len) {
  for (const auto& r : ram)
    if (gpa >= r.gpa && len <= r.size && gpa - r.gpa <= r.size - len) return r.host + (gpa - r.gpa);
  return nullptr;
}

Status bad_record(size_t index, size_t offset, const std::string& why) {
  return Status::error("corrupt PAGES record #" + std::to_string(index) + " at payload offset " +
                       std::to_string(offset) + ": " + why);
}

std::string other_stream(uint64_t gpa, Affinity a) {
  return "page at " + std::to_string(gpa) + " on stream " + std::to_string(a.stream) + " of " +
         std::to_string(a.streams) + " (it belongs to another stream)";
}

}  // namespace

ZeroPages::ZeroPages(std::span<const MemoryRegion> ram, bool known_zero) {
  size_t words = 0;
  for (const auto& r : ram) {
    ranges_.push_back({r.gpa, r.size, words});
    words += ((r.size >> kPageShift) + 63) / 64;
  }
  bits_.assign(words, known_zero ? ~uint64_t{0} : 0);
}

uint64_t* ZeroPages::word(uint64_t gpa, uint64_t& bit) const {
  for (const auto& r : ranges_)
    if (gpa >= r.gpa && gpa - r.gpa < r.size) {
      const uint64_t page = (gpa - r.gpa) >> kPageShift;
      bit = uint64_t{1} << (page % 64);
      return &bits_[r.first_word + page / 64];
    }
  return nullptr;
}

bool ZeroPages::known_zero(uint64_t gpa) const {
  uint64_t bit = 0;
  const uint64_t* w = word(gpa, bit);
  return w && (*w & bit);
}

void ZeroPages::set(uint64_t gpa, bool zero) {
  uint64_t bit = 0;
  if (uint64_t* w = word(gpa, bit)) *w = zero ? (*w | bit) : (*w & ~bit);
}

Result<std::vector<uint8_t*>> place_raw_pages(const RawPagesHeader& h, std::span<const MemoryRegion> ram,
                                              ZeroPages* zero, Affinity affinity) {
  std::vector<uint8_t*> out;
  out.reserve(h.gpas.size());
  for (uint64_t gpa : h.gpas) {
    uint8_t* dst = ram_ptr(ram, gpa, kPageSize);
    if (!dst) return Status::error("RAW_PAGES: page at " + std::to_string(gpa) + " outside RAM");
    if (!affinity.allows(gpa, 1))
      return Status::error("protocol error: RAW_PAGES page at " + std::to_string(gpa) + " on stream " +
                           std::to_string(affinity.stream) + " (it belongs to another stream)");
    if (zero) zero->set(gpa, false);
    out.push_back(dst);
  }
  return out;
}

Status check_raw_pages(const RawPagesHeader& h, std::span<const MemoryRegion> ram) {
  if (!(h.flags & RawFlag::kDataHashed)) return Status::ok();
  std::vector<const uint8_t*> pages;
  for (uint64_t gpa : h.gpas) {
    const uint8_t* p = ram_ptr(ram, gpa, kPageSize);
    if (!p) return Status::error("RAW_PAGES: a page outside RAM");
    pages.push_back(p);
  }
  if (raw_pages_hash(pages) != h.data_hash)
    return Status::error("RAW_PAGES: the pages' bytes do not match their hash (corrupted on the way)");
  return Status::ok();
}

Result<CodecStats> decode_page_batch(std::span<const uint8_t> payload, std::span<const MemoryRegion> ram,
                                     ZeroPages* zero, Affinity affinity) {
  CodecStats st;
  st.bytes_in = payload.size();
  size_t off = 0;
  for (size_t index = 0; off < payload.size(); ++index) {
    if (payload.size() - off < kRecordHeaderSize) return bad_record(index, off, "truncated record header");
    const uint8_t* h = payload.data() + off;
    const uint64_t gpa = wire::load<uint64_t>(h);
    const uint8_t kind = h[8];
    const uint16_t length = wire::load<uint16_t>(h + 10);
    const uint8_t* data = h + kRecordHeaderSize;
    const size_t avail = payload.size() - off - kRecordHeaderSize;
    if (h[9] != 0) return bad_record(index, off, "reserved byte is " + std::to_string(h[9]));
    if (gpa & (kPageSize - 1)) return bad_record(index, off, "address " + std::to_string(gpa) + " not page aligned");

    switch (static_cast<PageKind>(kind)) {
      case PageKind::kZero: {
        if (length == 0) return bad_record(index, off, "empty zero run");
        const uint64_t bytes = uint64_t{length} * kPageSize;
        uint8_t* dst = ram_ptr(ram, gpa, bytes);
        if (!dst) return bad_record(index, off, "zero run at " + std::to_string(gpa) + " (+" + std::to_string(length) + " pages) outside RAM");
        if (!affinity.allows(gpa, length)) return bad_record(index, off, other_stream(gpa, affinity));
        for (uint64_t p = 0; p < bytes; p += kPageSize) {
          if (zero && zero->known_zero(gpa + p)) continue;
          // Otherwise reading is still cheaper than dirtying a page that is zero already.
          if (!is_zero_page(dst + p)) std::memset(dst + p, 0, kPageSize);
          if (zero) zero->set(gpa + p, true);
        }
        st.zero += length;
        st.bytes_out += bytes;
        off += kRecordHeaderSize;
        break;
      }
      case PageKind::kRaw: {
        if (length != kPageSize) return bad_record(index, off, "raw page of " + std::to_string(length) + " bytes");
        if (avail < kPageSize) return bad_record(index, off, "raw page truncated");
        uint8_t* dst = ram_ptr(ram, gpa, kPageSize);
        if (!dst) return bad_record(index, off, "page at " + std::to_string(gpa) + " outside RAM");
        if (!affinity.allows(gpa, 1)) return bad_record(index, off, other_stream(gpa, affinity));
        std::memcpy(dst, data, kPageSize);
        if (zero) zero->set(gpa, false);
        ++st.raw;
        st.bytes_out += kPageSize;
        off += kRecordHeaderSize + kPageSize;
        break;
      }
      case PageKind::kLz4: {
        if (length == 0 || length > kLz4MaxBytes)
          return bad_record(index, off, "lz4 block of " + std::to_string(length) + " bytes");
        if (avail < length) return bad_record(index, off, "lz4 block truncated");
        uint8_t* dst = ram_ptr(ram, gpa, kPageSize);
        if (!dst) return bad_record(index, off, "page at " + std::to_string(gpa) + " outside RAM");
        if (!affinity.allows(gpa, 1)) return bad_record(index, off, other_stream(gpa, affinity));
        // Bounded by the destination size: garbage can only fail, never write past the page.
        int n = LZ4_decompress_safe(reinterpret_cast<const char*>(data), reinterpret_cast<char*>(dst), length,
                                    static_cast<int>(kPageSize));
        if (n != static_cast<int>(kPageSize))
          return bad_record(index, off, n < 0 ? "lz4 block does not decode" : "lz4 block decodes to " + std::to_string(n) + " bytes, not 4096");
        if (zero) zero->set(gpa, false);
        ++st.lz4;
        st.bytes_out += kPageSize;
        off += kRecordHeaderSize + length;
        break;
      }
      default:
        return bad_record(index, off, "unknown page kind " + std::to_string(kind));
    }
  }
  return st;
}

}  // namespace minihv::migrate
