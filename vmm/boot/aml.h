// vmm/boot/aml.h — a small emitter of ACPI Machine Language (AML) bytes for the DSDT.
//
// Owns: the encodings the DSDT needs and nothing more: PkgLength, NameString, integers, strings,
// EISA ids, Name, Package, Scope, Device, Buffer, and ResourceTemplate with its descriptors and the
// end tag's checksum (ACPI 6.x, chapter 20 "ACPI Machine Language Specification" and 6.4
// "Resource Data Types"). No methods, no fields: the guest only reads names.
// Names are minihv's own constants (1–4 characters of A–Z, 0–9, '_' per segment, '.'-separated,
// optional leading '\'); they are padded with '_' like iasl does.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace minihv::boot::aml {

using Bytes = std::vector<uint8_t>;

// Opcodes and prefixes (ACPI 6.x 20.3).
constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kOnesOp = 0xFF;
constexpr uint8_t kNameOp = 0x08, kBytePrefix = 0x0A, kWordPrefix = 0x0B, kDWordPrefix = 0x0C;
constexpr uint8_t kStringPrefix = 0x0D, kQWordPrefix = 0x0E, kScopeOp = 0x10, kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12, kExtOpPrefix = 0x5B, kDeviceOp = 0x82;
constexpr uint8_t kRootChar = 0x5C, kDualNamePrefix = 0x2E, kMultiNamePrefix = 0x2F;

// PkgLength for a package whose contents (after the PkgLength itself) are `content_len` bytes:
// 1 byte up to 63 in total, then 2/3/4 bytes for 12/20/28-bit totals. The encoded length counts the
// PkgLength bytes too.
Bytes pkg_length(uint32_t content_len);
Bytes name_string(std::string_view path);
Bytes integer(uint64_t v);
Bytes string(std::string_view s);
// EisaId("PNP0501") → DWordConst 0x0105D041.
Bytes eisa_id(std::string_view id);

Bytes name(std::string_view name, const Bytes& value);
Bytes package(std::initializer_list<Bytes> elements);
Bytes scope(std::string_view name, const Bytes& body);
Bytes device(std::string_view name, const Bytes& body);
Bytes buffer(const Bytes& data);
Bytes concat(std::initializer_list<Bytes> parts);

enum class Trigger { kLevel, kEdge };
enum class Polarity { kActiveHigh, kActiveLow };

// ResourceTemplate () { ... }: descriptors in order, then the end tag whose checksum makes the
// whole template sum to zero. build() returns the Buffer object.
class ResourceTemplate {
public:
  ResourceTemplate& memory32_fixed(bool writable, uint32_t base, uint32_t size);
  // Interrupt (ResourceConsumer, trigger, polarity, Exclusive) { gsi }: extended descriptor 0x89.
  ResourceTemplate& interrupt(Trigger trigger, Polarity polarity, uint32_t gsi);
  // IO (Decode16, base, base, align, len): fixed legacy I/O range.
  ResourceTemplate& io(uint16_t base, uint8_t align, uint8_t len);
  // IRQNoFlags () { irq }: ISA IRQ, edge-triggered active-high.
  ResourceTemplate& irq_no_flags(uint8_t irq);
  Bytes descriptors_with_end_tag() const;
  Bytes build() const { return buffer(descriptors_with_end_tag()); }

private:
  Bytes body_;
};

}  // namespace minihv::boot::aml
