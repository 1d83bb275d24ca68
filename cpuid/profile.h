// cpuid/profile.h — a processor's CPUID table: vendor + (leaf, subleaf) → eax, ebx, ecx, edx.
//
// A Profile is plain data: what one processor (or KVM, or a model) answers to CPUID. Features
// are read and written through cpuid/features.h by name; this file knows only the table.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace minihv::cpuid {

// Leaves this module reads or rewrites by number.
constexpr uint32_t kLeafVendor = 0x0;
constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParams = 0x4;
constexpr uint32_t kLeafPower = 0x6;
constexpr uint32_t kLeafExtFeatures = 0x7;
constexpr uint32_t kLeafPmu = 0xA;
constexpr uint32_t kLeafTopology = 0xB;
constexpr uint32_t kLeafXsave = 0xD;
constexpr uint32_t kLeafPt = 0x14;
constexpr uint32_t kLeafTopologyV2 = 0x1F;
constexpr uint32_t kLeafHvBase = 0x40000000;
constexpr uint32_t kLeafKvmFeatures = 0x40000001;
constexpr uint32_t kLeafExtBase = 0x80000000;
constexpr uint32_t kLeafExtFeatures1 = 0x80000001;
constexpr uint32_t kLeafPowerMgmt = 0x80000007;
constexpr uint32_t kLeafAddrSizes = 0x80000008;
constexpr uint32_t kLeafAmdCacheTopo = 0x8000001D;
constexpr uint32_t kLeafAmdTopoExt = 0x8000001E;
constexpr uint32_t kLeafAmdPerfMonV2 = 0x80000022;

constexpr char kVendorIntel[] = "GenuineIntel";
constexpr char kVendorAmd[] = "AuthenticAMD";

enum class Reg : uint8_t { kEax, kEbx, kEcx, kEdx };
const char* reg_name(Reg r);

struct Regs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  uint32_t& operator[](Reg r);
  uint32_t operator[](Reg r) const;
  bool operator==(const Regs&) const = default;
};

struct LeafKey {
  uint32_t leaf = 0, subleaf = 0;
  auto operator<=>(const LeafKey&) const = default;
};

// Leaves whose answer depends on ECX (KVM_CPUID_FLAG_SIGNIFCANT_INDEX); for the others the
// subleaf is always 0 in a Profile.
bool is_indexed(uint32_t leaf);

class Profile {
public:
  std::string vendor;  // the 12-character string of leaf 0, e.g. "GenuineIntel"
  std::map<LeafKey, Regs> leaves;

  bool is_intel() const { return vendor == kVendorIntel; }
  bool is_amd() const { return vendor == kVendorAmd; }
  const Regs* find(uint32_t leaf, uint32_t subleaf = 0) const;
  Regs* find(uint32_t leaf, uint32_t subleaf = 0);
  Regs get(uint32_t leaf, uint32_t subleaf = 0) const;  // zeros when absent
  Regs& at(uint32_t leaf, uint32_t subleaf = 0);        // creates a zero entry when absent
  void erase_leaf(uint32_t leaf);                       // every subleaf
  // Leaf 0 EAX / 0x80000000 EAX: the highest basic / extended leaf.
  uint32_t max_basic() const { return get(kLeafVendor).eax; }
  uint32_t max_extended() const { return get(kLeafExtBase).eax; }
  unsigned phys_bits() const { return get(kLeafAddrSizes).eax & 0xffu; }
  // Family/model/stepping decoded from leaf 1 EAX as Linux does.
  unsigned family() const;
  unsigned model() const;
  unsigned stepping() const;
  // Writes `vendor` into leaf 0 (and 0x80000000 on AMD) registers.
  void store_vendor();
  bool operator==(const Profile&) const = default;

  static Profile from_kvm(std::span<const kvm_cpuid_entry2> entries);
  std::vector<kvm_cpuid_entry2> to_kvm() const;
};

std::string vendor_from_regs(const Regs& leaf0);

}  // namespace minihv::cpuid
