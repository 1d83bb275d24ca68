// vmm/boot/bytes.h — little-endian byte building and reading for firmware tables and kernel headers.
//
// Owns: ByteWriter (append/patch little-endian fields), bounds-checked little-endian reads, and the
// 8-bit checksum every ACPI table, MP table and resource template uses.
// Must not know: guest memory or KVM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace minihv::boot {

// The byte that makes the 8-bit sum of `bytes` plus itself zero.
inline uint8_t checksum_byte(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = static_cast<uint8_t>(sum + b);
  return static_cast<uint8_t>(0x100 - sum);
}

inline uint8_t sum8(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = static_cast<uint8_t>(sum + b);
  return sum;
}

class ByteWriter {
public:
  size_t size() const { return buf_.size(); }
  const std::vector<uint8_t>& bytes() const { return buf_; }
  std::vector<uint8_t>& bytes() { return buf_; }
  std::vector<uint8_t> take() && { return std::move(buf_); }

  ByteWriter& u8(uint8_t v) { buf_.push_back(v); return *this; }
  ByteWriter& u16(uint16_t v) { return le(v, 2); }
  ByteWriter& u32(uint32_t v) { return le(v, 4); }
  ByteWriter& u64(uint64_t v) { return le(v, 8); }
  ByteWriter& append(std::span<const uint8_t> b) {
    buf_.insert(buf_.end(), b.begin(), b.end());
    return *this;
  }
  // `s` padded with `pad` (or cut) to exactly `width` bytes: signatures, OEM ids.
  ByteWriter& fixed_str(std::string_view s, size_t width, char pad = ' ') {
    for (size_t i = 0; i < width; ++i) u8(static_cast<uint8_t>(i < s.size() ? s[i] : pad));
    return *this;
  }
  ByteWriter& zeros(size_t n) { buf_.insert(buf_.end(), n, 0); return *this; }

  void patch_u8(size_t off, uint8_t v) { buf_.at(off) = v; }
  void patch_u16(size_t off, uint16_t v) { patch(off, v, 2); }
  void patch_u32(size_t off, uint32_t v) { patch(off, v, 4); }

private:
  ByteWriter& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  void patch(size_t off, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf_.at(off + static_cast<size_t>(i)) = static_cast<uint8_t>(v >> (8 * i));
  }
  std::vector<uint8_t> buf_;
};

// Little-endian read of a T-sized unsigned field at `off`, or nullopt when it is outside `bytes`.
template <typename T>
std::optional<T> read_le(std::span<const uint8_t> bytes, uint64_t off) {
  if (off > bytes.size() || bytes.size() - off < sizeof(T)) return std::nullopt;
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | static_cast<T>(bytes[off + i]) << (8 * i));
  return v;
}

}  // namespace minihv::boot
