#include "blockdev/record.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <random>

namespace minihv::blockdev {

namespace {

constexpr size_t kMagicOffset = 0, kVersionOffset = 8, kIndexOffset = 12, kUuidOffset = 16;

const char* magic_of(RecordKind k) {
  switch (k) {
    case RecordKind::kSuper: return "MHVSUPER";
    case RecordKind::kLease: return "MHVLEASE";
    case RecordKind::kDisk: return "MHVDISK";
    case RecordKind::kConfig: return "MHVCONF";
  }
  return "";
}

uint64_t checksum(const Block& b) { return XXH3_64bits(b.bytes, kChecksumOffset); }

std::array<uint8_t, 8> magic_bytes(RecordKind k) {
  std::array<uint8_t, 8> m{};
  const char* s = magic_of(k);
  std::memcpy(m.data(), s, std::min<size_t>(std::strlen(s), m.size()));
  return m;
}

}  // namespace

std::string uuid_string(const Uuid& u) {
  char s[37];
  std::snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
                u[13], u[14], u[15]);
  return s;
}

uint64_t random_u64() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen();
}

Uuid random_uuid() {
  Uuid u{};
  const uint64_t a = random_u64(), b = random_u64();
  std::memcpy(u.data(), &a, 8);
  std::memcpy(u.data() + 8, &b, 8);
  u[6] = static_cast<uint8_t>((u[6] & 0x0f) | 0x40);  // version 4 (random)
  u[8] = static_cast<uint8_t>((u[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return u;
}

const char* to_string(RecordCheck c) {
  switch (c) {
    case RecordCheck::kOk: return "ok";
    case RecordCheck::kBlank: return "blank";
    case RecordCheck::kTorn: return "torn (checksum mismatch)";
    case RecordCheck::kForeign: return "foreign (another volume's or not a minihv record)";
    case RecordCheck::kMisplaced: return "misplaced (belongs to another slot)";
    case RecordCheck::kNewer: return "written by a newer minihv";
    case RecordCheck::kInvalid: return "invalid (breaks the format's rules)";
  }
  return "?";
}

void RecordView::put_str(size_t off, std::string_view s, size_t max) {
  const size_t n = std::min(s.size(), max - 1);
  std::memset(b_.bytes + off, 0, max);
  std::memcpy(b_.bytes + off, s.data(), n);
}

std::string RecordView::str(size_t off, size_t max) const {
  const auto* p = reinterpret_cast<const char*>(b_.bytes + off);
  return std::string(p, strnlen(p, max));
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

void seal_record(Block& b, RecordKind kind, uint32_t index, const Uuid& uuid) {
  RecordView v(b);
  const auto magic = magic_bytes(kind);
  v.put_bytes(kMagicOffset, magic.data(), magic.size());
  v.put_u32(kVersionOffset, kFormatVersion);
  v.put_u32(kIndexOffset, index);
  v.put_bytes(kUuidOffset, uuid.data(), uuid.size());
  v.put_u64(kChecksumOffset, checksum(b));
}

bool has_magic(const Block& b, RecordKind kind) {
  const auto magic = magic_bytes(kind);
  return std::memcmp(b.bytes + kMagicOffset, magic.data(), magic.size()) == 0;
}

Uuid record_uuid(const Block& b) {
  Uuid u{};
  std::memcpy(u.data(), b.bytes + kUuidOffset, u.size());
  return u;
}

RecordCheck check_record_any_uuid(const Block& b, RecordKind kind, uint32_t index) {
  if (std::all_of(std::begin(b.bytes), std::end(b.bytes), [](uint8_t x) { return x == 0; }))
    return RecordCheck::kBlank;
  auto& view = const_cast<Block&>(b);
  RecordView v(view);
  if (!has_magic(b, kind)) return RecordCheck::kForeign;
  if (v.u64(kChecksumOffset) != checksum(b)) return RecordCheck::kTorn;
  if (v.u32(kVersionOffset) > kFormatVersion) return RecordCheck::kNewer;
  if (v.u32(kIndexOffset) != index) return RecordCheck::kMisplaced;
  return RecordCheck::kOk;
}

RecordCheck check_record(const Block& b, RecordKind kind, uint32_t index, const Uuid& uuid) {
  const RecordCheck c = check_record_any_uuid(b, kind, index);
  if (c != RecordCheck::kOk) return c;
  return record_uuid(b) == uuid ? RecordCheck::kOk : RecordCheck::kForeign;
}

}  // namespace minihv::blockdev
