// cpuid/features.h — named CPUID features: one table maps each name to (leaf, subleaf, register, bit).
//
// Names are Linux's /proc/cpuinfo names where Linux shows the bit (sse4_2, avx2, pdpe1gb, ...);
// where it does not (KVM paravirt bits, Processor Trace sub-features, XSAVE state components), the
// name follows the kernel macro or QEMU's property in lower case. Masks elsewhere are lists of
// these names, never bare hex.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

enum class FeatureKind : uint8_t {
  kCpu,        // an instruction-set or platform feature a model may grant or hide
  kKvm,        // a KVM paravirtual feature (leaf 0x40000001)
  kXsaveState  // an XSAVE state component (leaf 0xD): derived from the kCpu features left
};

struct Feature {
  std::string_view name;
  uint32_t leaf;
  uint32_t subleaf;
  Reg reg;
  uint8_t bit;
  FeatureKind kind;
  std::string_view what;  // one line for `cpuid models` and the docs

  uint32_t mask() const { return 1u << bit; }
};

std::span<const Feature> all_features();
const Feature* find_feature(std::string_view name);
// A feature by name, or Status::invalid naming the closest valid names.
Result<const Feature*> lookup_feature(std::string_view name);

bool has(const Profile& p, const Feature& f);
bool has(const Profile& p, std::string_view name);  // false for unknown names
void set(Profile& p, const Feature& f, bool on);
// Every named feature that is on, in table order.
std::vector<std::string> enabled_features(const Profile& p);

// A register that holds named feature bits (kCpu or kKvm); masks clear its unnamed bits too.
struct FeatureReg {
  uint32_t leaf, subleaf;
  Reg reg;
  auto operator<=>(const FeatureReg&) const = default;
};
std::span<const FeatureReg> feature_registers();
bool is_feature_register(uint32_t leaf, uint32_t subleaf, Reg reg);

}  // namespace minihv::cpuid
