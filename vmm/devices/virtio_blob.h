// vmm/devices/virtio_blob.h — little-endian writer/reader for the virtio save-state blobs.
//
// Owns: byte order and bounds checking of saved state. A reader never reads past its span: a short
// or corrupt blob turns into ok() == false, which the caller reports as a clear error.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

namespace minihv::virtio {

class BlobWriter {
public:
  template <typename T> void put(T v) {
    static_assert(std::is_unsigned_v<T>);
    for (size_t i = 0; i < sizeof(T); ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void put_bytes(std::span<const uint8_t> b) {
    put<uint32_t>(static_cast<uint32_t>(b.size()));
    bytes_.insert(bytes_.end(), b.begin(), b.end());
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

private:
  std::vector<uint8_t> bytes_;
};

class BlobReader {
public:
  explicit BlobReader(std::span<const uint8_t> b) : b_(b) {}
  template <typename T> T get() {
    static_assert(std::is_unsigned_v<T>);
    T v = 0;
    if (!ok_ || b_.size() - pos_ < sizeof(T)) {
      ok_ = false;
      return 0;
    }
    for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | T(b_[pos_ + i]) << (8 * i));
    pos_ += sizeof(T);
    return v;
  }
  // A length-prefixed byte string (as put_bytes wrote it); empty and !ok() when it does not fit.
  std::span<const uint8_t> get_bytes() {
    const uint32_t n = get<uint32_t>();
    if (!ok_ || b_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }

private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace minihv::virtio
