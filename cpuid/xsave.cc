// Leaf 0xD: which state components XSAVE manages and how big the save area is, recomputed from
// the features a model left on, so that a guest never sees XCR0 bits for hidden features or a
// save area sized for state it cannot enable.
#include <algorithm>
#include <array>
#include <string_view>

#include "cpuid/features.h"
#include "cpuid/normalize.h"

namespace minihv::cpuid {

namespace {

struct Component {
  unsigned index;
  std::string_view needs;  // the feature that makes the component usable ("" = always with XSAVE)
  bool supervisor;         // an IA32_XSS component (0xD.1 ECX/EDX) rather than XCR0
  uint32_t size, offset;   // the standard (non-compacted) layout, for dumps without subleaf i
};

// SDM vol. 1, 13.4: the standard format's fixed offsets for user components.
constexpr std::array kComponents = std::to_array<Component>({
    {0, "", false, 160, 0},          {1, "", false, 256, 160},
    {2, "avx", false, 256, 576},     {3, "mpx", false, 64, 960},
    {4, "mpx", false, 64, 1024},     {5, "avx512f", false, 64, 1088},
    {6, "avx512f", false, 512, 1152}, {7, "avx512f", false, 1024, 1664},
    {8, "intel_pt", true, 0, 0},     {9, "pku", false, 8, 2688},
    {11, "shstk", true, 0, 0},       {12, "shstk", true, 0, 0},
    {15, "arch_lbr", true, 0, 0},    {17, "amx_tile", false, 64, 2752},
    {18, "amx_tile", false, 8192, 2816},
});
constexpr unsigned kFirstExtended = 2;  // components 0 and 1 live in the legacy area
constexpr uint32_t kCompactAlign = 64;
constexpr uint32_t kSubleafAlignedBit = 1u << 1;  // 0xD.i ECX bit 1: 64-byte aligned when compacted

}  // namespace

void normalize_xsave(Profile& p) {
  if (!has(p, "xsave")) {
    p.erase_leaf(kLeafXsave);
    return;
  }
  const Profile before = p;
  const Regs d0 = before.get(kLeafXsave, 0), d1 = before.get(kLeafXsave, 1);
  const uint64_t host_xcr0 = d0.eax | (uint64_t{d0.edx} << 32);
  const uint64_t host_xss = d1.ecx | (uint64_t{d1.edx} << 32);
  uint64_t xcr0 = 0, xss = 0;
  for (const Component& c : kComponents) {
    const uint64_t bit = uint64_t{1} << c.index;
    const bool usable = c.needs.empty() || has(p, c.needs);
    // x87 and SSE are architecturally always there when XSAVE is; other components only when the
    // host (or dump) listed them.
    const bool offered = c.index < kFirstExtended || ((c.supervisor ? host_xss : host_xcr0) & bit);
    if (usable && offered) (c.supervisor ? xss : xcr0) |= bit;
  }
  p.erase_leaf(kLeafXsave);
  uint32_t max_end = kXsaveLegacyAndHeader, compacted = kXsaveLegacyAndHeader;
  for (const Component& c : kComponents) {
    const uint64_t bit = uint64_t{1} << c.index;
    if (c.index < kFirstExtended || !((xcr0 | xss) & bit)) continue;
    Regs sub = before.get(kLeafXsave, c.index);
    if (sub.eax == 0 && !c.supervisor) sub = Regs{c.size, c.offset, 0, 0};
    p.at(kLeafXsave, c.index) = sub;
    if (!c.supervisor) max_end = std::max(max_end, sub.eax + sub.ebx);
    if (sub.ecx & kSubleafAlignedBit) compacted = (compacted + kCompactAlign - 1) / kCompactAlign * kCompactAlign;
    compacted += sub.eax;
  }
  // EBX (size for the XCR0 in use) is rewritten by KVM at run time; start it at the maximum.
  p.at(kLeafXsave, 0) = Regs{static_cast<uint32_t>(xcr0), max_end, max_end, static_cast<uint32_t>(xcr0 >> 32)};
  Regs one = d1;
  one.ecx = static_cast<uint32_t>(xss);
  one.edx = static_cast<uint32_t>(xss >> 32);
  const bool compacts = has(p, "xsavec") || has(p, "xsaves");
  one.ebx = compacts ? compacted : 0;
  p.at(kLeafXsave, 1) = one;
}

}  // namespace minihv::cpuid
