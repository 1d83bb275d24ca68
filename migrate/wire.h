// migrate/wire.h — little-endian loads/stores and a bounds-checked payload reader (module-internal).
//
// Owns: the byte order of the wire. Every multi-byte field goes through these helpers.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "common/status.h"

namespace minihv::migrate::wire {

static_assert(std::endian::native == std::endian::little, "minihv targets x86-64; add byte swaps here");

template <typename T> inline T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T> inline void store(uint8_t* p, T v) { std::memcpy(p, &v, sizeof v); }

// Reads fields front to back; any read past the end sets a sticky failure instead of reading.
class Reader {
public:
  Reader(std::span<const uint8_t> b, const char* what) : b_(b), what_(what) {}
  template <typename T> T get() {
    if (!need(sizeof(T))) return T{};
    T v = load<T>(b_.data() + off_);
    off_ += sizeof(T);
    return v;
  }
  std::span<const uint8_t> bytes(size_t n) {
    if (!need(n)) return {};
    auto s = b_.subspan(off_, n);
    off_ += n;
    return s;
  }
  std::string string(size_t max) {
    uint32_t n = get<uint32_t>();
    if (n > max) {
      if (ok_) error_ = "string of " + std::to_string(n) + " bytes exceeds " + std::to_string(max);
      ok_ = false;
      return {};
    }
    auto s = bytes(n);
    return std::string(s.begin(), s.end());
  }
  size_t remaining() const { return b_.size() - off_; }
  // Ok when every read fitted and nothing is left over.
  Status finish() const {
    if (!ok_) return Status::error(std::string(what_) + ": " + error_);
    if (remaining() != 0)
      return Status::error(std::string(what_) + ": " + std::to_string(remaining()) + " trailing bytes");
    return Status::ok();
  }
  bool ok() const { return ok_; }

private:
  bool need(size_t n) {
    if (ok_ && n <= b_.size() - off_) return true;
    if (ok_) error_ = "truncated payload (" + std::to_string(b_.size()) + " bytes)";
    ok_ = false;
    return false;
  }
  std::span<const uint8_t> b_;
  const char* what_;
  size_t off_ = 0;
  bool ok_ = true;
  std::string error_;
};

}  // namespace minihv::migrate::wire
