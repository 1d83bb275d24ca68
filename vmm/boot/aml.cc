#include "vmm/boot/aml.h"

#include <algorithm>

#include "vmm/boot/bytes.h"

namespace minihv::boot::aml {

namespace {

constexpr uint32_t kPkgLen1Max = 0x3F;        // 6 bits in the lead byte alone
constexpr uint32_t kPkgLen2Max = 0xFFF;       // 4 + 8 bits
constexpr uint32_t kPkgLen3Max = 0xFFFFF;     // 4 + 16 bits
constexpr size_t kNameSegLen = 4;

// Resource descriptor tags (ACPI 6.x 6.4).
constexpr uint8_t kIrqNoFlagsTag = 0x22;      // small item 0x04, length 2
constexpr uint8_t kIoTag = 0x47;              // small item 0x08, length 7
constexpr uint8_t kIoDecode16 = 0x01;
constexpr uint8_t kEndTag = 0x79;             // small item 0x0F, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;   // large item 0x06
constexpr uint16_t kMemory32FixedLen = 9;
constexpr uint8_t kExtInterruptTag = 0x89;    // large item 0x09
constexpr uint16_t kExtInterruptLen1 = 6;     // flags, count, one 32-bit GSI
constexpr uint8_t kIntConsumer = 1 << 0, kIntEdge = 1 << 1, kIntActiveLow = 1 << 2;

void append(Bytes& out, const Bytes& b) { out.insert(out.end(), b.begin(), b.end()); }

void append_name_seg(Bytes& out, std::string_view seg) {
  for (size_t i = 0; i < kNameSegLen; ++i) out.push_back(static_cast<uint8_t>(i < seg.size() ? seg[i] : '_'));
}

// opcode(s) PkgLength body
Bytes with_pkg(std::initializer_list<uint8_t> ops, const Bytes& body) {
  Bytes out(ops);
  append(out, pkg_length(static_cast<uint32_t>(body.size())));
  append(out, body);
  return out;
}

uint8_t hex_value(char c) {
  if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
  if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(c - 'A' + 10);
  if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
  return 0;
}

}  // namespace

Bytes pkg_length(uint32_t content_len) {
  uint32_t total = content_len + 1;
  if (total <= kPkgLen1Max) return {static_cast<uint8_t>(total)};
  int follow = 1;
  total = content_len + 2;
  if (total > kPkgLen2Max) { follow = 2; total = content_len + 3; }
  if (total > kPkgLen3Max) { follow = 3; total = content_len + 4; }
  Bytes out{static_cast<uint8_t>((follow << 6) | (total & 0xF))};
  for (int i = 0; i < follow; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
  return out;
}

Bytes name_string(std::string_view path) {
  Bytes out;
  if (!path.empty() && path.front() == '\\') {
    out.push_back(kRootChar);
    path.remove_prefix(1);
  }
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    const size_t dot = path.find('.');
    segs.push_back(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  if (segs.empty()) out.push_back(0);  // NullName
  for (std::string_view s : segs) append_name_seg(out, s);
  return out;
}

Bytes integer(uint64_t v) {
  if (v == 0) return {kZeroOp};
  if (v == 1) return {kOneOp};
  ByteWriter w;
  if (v <= 0xFF) w.u8(kBytePrefix).u8(static_cast<uint8_t>(v));
  else if (v <= 0xFFFF) w.u8(kWordPrefix).u16(static_cast<uint16_t>(v));
  else if (v <= 0xFFFFFFFF) w.u8(kDWordPrefix).u32(static_cast<uint32_t>(v));
  else w.u8(kQWordPrefix).u64(v);
  return std::move(w).take();
}

Bytes string(std::string_view s) {
  Bytes out(s.size() + 2, 0);  // prefix, characters, NUL (sized up front: GCC 12 misjudges insert)
  out[0] = kStringPrefix;
  std::copy(s.begin(), s.end(), out.begin() + 1);
  return out;
}

Bytes eisa_id(std::string_view id) {
  // Three letters as 5-bit values ('A' = 1) packed big-endian into 15 bits, then 4 hex digits.
  auto letter = [&](size_t i) { return static_cast<uint32_t>(id.size() > i ? (id[i] - 0x40) & 0x1F : 0); };
  auto hex = [&](size_t i) { return static_cast<uint32_t>(id.size() > i ? hex_value(id[i]) : 0); };
  const uint32_t vendor = (letter(0) << 10) | (letter(1) << 5) | letter(2);
  const uint32_t b0 = vendor >> 8, b1 = vendor & 0xFF;
  const uint32_t b2 = (hex(3) << 4) | hex(4), b3 = (hex(5) << 4) | hex(6);
  ByteWriter w;
  w.u8(kDWordPrefix).u32(b0 | (b1 << 8) | (b2 << 16) | (b3 << 24));
  return std::move(w).take();
}

Bytes name(std::string_view n, const Bytes& value) {
  Bytes out{kNameOp};
  append(out, name_string(n));
  append(out, value);
  return out;
}

Bytes package(std::initializer_list<Bytes> elements) {
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const Bytes& e : elements) append(body, e);
  return with_pkg({kPackageOp}, body);
}

Bytes scope(std::string_view n, const Bytes& body) {
  Bytes inner = name_string(n);
  append(inner, body);
  return with_pkg({kScopeOp}, inner);
}

Bytes device(std::string_view n, const Bytes& body) {
  Bytes inner = name_string(n);
  append(inner, body);
  return with_pkg({kExtOpPrefix, kDeviceOp}, inner);
}

Bytes buffer(const Bytes& data) {
  Bytes inner = integer(data.size());
  append(inner, data);
  return with_pkg({kBufferOp}, inner);
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) append(out, p);
  return out;
}

ResourceTemplate& ResourceTemplate::memory32_fixed(bool writable, uint32_t base, uint32_t size) {
  ByteWriter w;
  w.u8(kMemory32FixedTag).u16(kMemory32FixedLen).u8(writable ? 1 : 0).u32(base).u32(size);
  append(body_, w.bytes());
  return *this;
}

ResourceTemplate& ResourceTemplate::interrupt(Trigger trigger, Polarity polarity, uint32_t gsi) {
  uint8_t flags = kIntConsumer;  // exclusive, not wake-capable
  if (trigger == Trigger::kEdge) flags |= kIntEdge;
  if (polarity == Polarity::kActiveLow) flags |= kIntActiveLow;
  ByteWriter w;
  w.u8(kExtInterruptTag).u16(kExtInterruptLen1).u8(flags).u8(1).u32(gsi);
  append(body_, w.bytes());
  return *this;
}

ResourceTemplate& ResourceTemplate::io(uint16_t base, uint8_t align, uint8_t len) {
  ByteWriter w;
  w.u8(kIoTag).u8(kIoDecode16).u16(base).u16(base).u8(align).u8(len);
  append(body_, w.bytes());
  return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(uint8_t irq) {
  ByteWriter w;
  w.u8(kIrqNoFlagsTag).u16(static_cast<uint16_t>(1u << (irq & 0xF)));
  append(body_, w.bytes());
  return *this;
}

Bytes ResourceTemplate::descriptors_with_end_tag() const {
  Bytes out = body_;
  out.push_back(kEndTag);
  out.push_back(checksum_byte(out));
  return out;
}

}  // namespace minihv::boot::aml
