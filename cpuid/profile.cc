#include "cpuid/profile.h"

#include <cstring>

namespace minihv::cpuid {

const char* reg_name(Reg r) {
  switch (r) {
    case Reg::kEax: return "eax";
    case Reg::kEbx: return "ebx";
    case Reg::kEcx: return "ecx";
    case Reg::kEdx: return "edx";
  }
  return "?";
}

uint32_t& Regs::operator[](Reg r) {
  switch (r) {
    case Reg::kEax: return eax;
    case Reg::kEbx: return ebx;
    case Reg::kEcx: return ecx;
    case Reg::kEdx: break;
  }
  return edx;
}

uint32_t Regs::operator[](Reg r) const { return (*const_cast<Regs*>(this))[r]; }

bool is_indexed(uint32_t leaf) {
  switch (leaf) {
    case 0x4: case 0x7: case 0xB: case 0xD: case 0xF: case 0x10: case 0x12: case 0x14:
    case 0x17: case 0x18: case 0x1D: case 0x1E: case 0x1F: case 0x20: case 0x23: case 0x24:
    case 0x8000001D: case 0x80000020: case 0x80000026:
      return true;
    default:
      return false;
  }
}

const Regs* Profile::find(uint32_t leaf, uint32_t subleaf) const {
  auto it = leaves.find(LeafKey{leaf, subleaf});
  return it == leaves.end() ? nullptr : &it->second;
}

Regs* Profile::find(uint32_t leaf, uint32_t subleaf) {
  auto it = leaves.find(LeafKey{leaf, subleaf});
  return it == leaves.end() ? nullptr : &it->second;
}

Regs Profile::get(uint32_t leaf, uint32_t subleaf) const {
  const Regs* r = find(leaf, subleaf);
  return r ? *r : Regs{};
}

Regs& Profile::at(uint32_t leaf, uint32_t subleaf) { return leaves[LeafKey{leaf, subleaf}]; }

void Profile::erase_leaf(uint32_t leaf) {
  auto it = leaves.lower_bound(LeafKey{leaf, 0});
  while (it != leaves.end() && it->first.leaf == leaf) it = leaves.erase(it);
}

// Family/model as the SDM and APM define them: the extended fields count only for family 0xF
// (family) and families 6 and 0xF (model).
unsigned Profile::family() const {
  uint32_t eax = get(kLeafFeatures).eax;
  unsigned base = (eax >> 8) & 0xf;
  return base == 0xf ? base + ((eax >> 20) & 0xff) : base;
}

unsigned Profile::model() const {
  uint32_t eax = get(kLeafFeatures).eax;
  unsigned base = (eax >> 4) & 0xf, fam = (eax >> 8) & 0xf;
  return (fam == 0x6 || fam == 0xf) ? base | (((eax >> 16) & 0xf) << 4) : base;
}

unsigned Profile::stepping() const { return get(kLeafFeatures).eax & 0xf; }

std::string vendor_from_regs(const Regs& leaf0) {
  char s[13] = {};
  std::memcpy(s, &leaf0.ebx, 4);
  std::memcpy(s + 4, &leaf0.edx, 4);
  std::memcpy(s + 8, &leaf0.ecx, 4);
  return std::string(s, strnlen(s, 12));
}

void Profile::store_vendor() {
  char s[12] = {};
  std::memcpy(s, vendor.data(), std::min<size_t>(vendor.size(), 12));
  auto put = [&](Regs& r) {
    std::memcpy(&r.ebx, s, 4);
    std::memcpy(&r.edx, s + 4, 4);
    std::memcpy(&r.ecx, s + 8, 4);
  };
  put(at(kLeafVendor));
  if (is_amd() && find(kLeafExtBase)) put(at(kLeafExtBase));
}

Profile Profile::from_kvm(std::span<const kvm_cpuid_entry2> entries) {
  Profile p;
  for (const kvm_cpuid_entry2& e : entries) {
    uint32_t sub = is_indexed(e.function) ? e.index : 0;
    p.leaves[LeafKey{e.function, sub}] = Regs{e.eax, e.ebx, e.ecx, e.edx};
  }
  p.vendor = vendor_from_regs(p.get(kLeafVendor));
  return p;
}

std::vector<kvm_cpuid_entry2> Profile::to_kvm() const {
  std::vector<kvm_cpuid_entry2> out;
  out.reserve(leaves.size());
  for (const auto& [k, r] : leaves) {
    kvm_cpuid_entry2 e{};
    e.function = k.leaf;
    e.index = k.subleaf;
    e.flags = is_indexed(k.leaf) ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    e.eax = r.eax;
    e.ebx = r.ebx;
    e.ecx = r.ecx;
    e.edx = r.edx;
    out.push_back(e);
  }
  return out;
}

}  // namespace minihv::cpuid
