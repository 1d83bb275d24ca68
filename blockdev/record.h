// blockdev/record.h — one checksummed 4 KiB metadata record: the unit the volume is made of.
//
// Every record starts with the same header and ends with an xxh3-64 of everything before it:
//   0  magic[8]   what the record is ("MHVSUPER", "MHVLEASE", "MHVDISK\0", "MHVCONF\0")
//   8  u32        format version
//  12  u32        index of the record in its area (a record copied to the wrong slot is caught)
//  16  uuid[16]   the volume's uuid (a record of another volume is caught)
//  32  ...        payload, little-endian, fixed offsets (see docs/volume-format.md)
// 4088 u64        xxh3-64 of bytes [0, 4088)
// A record that fails any of these checks is reported, never trusted.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "blockdev/device.h"

namespace minihv::blockdev {

constexpr uint32_t kFormatVersion = 1;
constexpr size_t kChecksumOffset = kBlockSize - 8;
constexpr size_t kPayloadOffset = 32;
constexpr size_t kNameBytes = 64;  // fixed-size, NUL-padded string fields

using Uuid = std::array<uint8_t, 16>;
std::string uuid_string(const Uuid& u);
Uuid random_uuid();
uint64_t random_u64();

enum class RecordKind { kSuper, kLease, kDisk, kConfig };

enum class RecordCheck {
  kOk,
  kBlank,      // all zeros: never written
  kTorn,       // checksum mismatch: a write that did not complete, or damage
  kForeign,    // wrong magic or another volume's uuid
  kMisplaced,  // right volume, wrong slot
  kNewer,      // written by a newer format version
  kInvalid,    // checksum and header fine, but a field breaks the format's rules (an extent past
               // the end, an overlap, a state or name no minihv writes): a bug or a forged record
};
const char* to_string(RecordCheck c);

// Little-endian field access at fixed offsets of one block.
class RecordView {
public:
  explicit RecordView(Block& b) : b_(b) {}
  void put_u32(size_t off, uint32_t v) { put(off, v); }
  void put_u64(size_t off, uint64_t v) { put(off, v); }
  void put_bytes(size_t off, const uint8_t* p, size_t n) { std::memcpy(b_.bytes + off, p, n); }
  // Writes `s` cut to `max - 1` bytes, NUL-padded to `max`.
  void put_str(size_t off, std::string_view s, size_t max = kNameBytes);
  uint32_t u32(size_t off) const { return get<uint32_t>(off); }
  uint64_t u64(size_t off) const { return get<uint64_t>(off); }
  std::string str(size_t off, size_t max = kNameBytes) const;

private:
  template <typename T> void put(size_t off, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) b_.bytes[off + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  template <typename T> T get(size_t off) const {
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(T{b_.bytes[off + i]} << (8 * i));
    return v;
  }
  Block& b_;
};

// Fills the header (kind, index, uuid) and the checksum. Call last, after the payload.
void seal_record(Block& b, RecordKind kind, uint32_t index, const Uuid& uuid);
// Checks magic, version, checksum, uuid and index.
RecordCheck check_record(const Block& b, RecordKind kind, uint32_t index, const Uuid& uuid);
// The same without a known uuid (the superblock, where the uuid comes from).
RecordCheck check_record_any_uuid(const Block& b, RecordKind kind, uint32_t index);
Uuid record_uuid(const Block& b);
// Whether a string field read from a record is plain printable ASCII (what minihv writes there);
// anything else is never shown or used.
bool printable(std::string_view s);
bool has_magic(const Block& b, RecordKind kind);

}  // namespace minihv::blockdev
