#include "cpuid/normalize.h"

#include <array>
#include <string_view>
#include <utility>

#include "cpuid/features.h"

namespace minihv::cpuid {

namespace {

// Leaf 1 EBX: [31:24] initial APIC id, [23:16] logical processors per package.
constexpr uint32_t kApicIdShift = 24, kLogicalCountShift = 16, kLogicalCountMask = 0xffu << 16;
// Leaf 4 / 0x8000001D EAX: [31:26] cores per package - 1 (leaf 4 only), [25:14] logical
// processors sharing this cache - 1, [7:5] cache level, [4:0] type (0 = no more caches).
constexpr uint32_t kCoresShift = 26, kCoresMask = 0x3fu << 26;
constexpr uint32_t kSharingShift = 14, kSharingMask = 0xfffu << 14;
constexpr uint32_t kCacheLevelShift = 5, kCacheLevelMask = 0x7, kCacheTypeMask = 0x1f;
// Leaf 0xB/0x1F ECX [15:8] level type.
constexpr uint32_t kTopoTypeSmt = 1, kTopoTypeCore = 2, kTopoTypeShift = 8;
// AMD 0x80000008 ECX: [7:0] cores - 1, [15:12] APIC id bits for the core id.
constexpr uint32_t kAmdNcMask = 0xff, kAmdApicIdSizeShift = 12, kAmdApicIdSizeMask = 0xfu << 12;
// 0x80000008 EAX [7:0] physical address bits.
constexpr uint32_t kPhysBitsMask = 0xff;
// AMD mirrors these leaf 1 EDX bits in 0x80000001 EDX: fpu..apic, mtrr..pse36, mmx, fxsr.
constexpr uint32_t kAmdEdxMirror = 0x3ffu | (0x3fu << 12) | (1u << 23) | (1u << 24);

unsigned ceil_log2(unsigned n) {
  unsigned s = 0;
  while ((1u << s) < n) ++s;
  return s;
}

// (feature, prerequisite): Linux's arch/x86/kernel/cpu/cpuid-deps.c has the same idea.
constexpr std::array<std::pair<std::string_view, std::string_view>, 45> kDeps = {{
    {"sse", "fxsr"},           {"sse2", "sse"},           {"pni", "sse2"},
    {"ssse3", "pni"},          {"sse4_1", "ssse3"},       {"sse4_2", "sse4_1"},
    {"sse4a", "pni"},          {"aes", "sse2"},           {"pclmulqdq", "sse2"},
    {"avx", "xsave"},          {"xsaveopt", "xsave"},     {"xsavec", "xsave"},
    {"xgetbv1", "xsave"},      {"xsaves", "xsave"},       {"xfd", "xsave"},
    {"avx2", "avx"},           {"fma", "avx"},            {"f16c", "avx"},
    {"fma4", "avx"},           {"xop", "avx"},            {"vaes", "avx"},
    {"vpclmulqdq", "avx"},     {"avx_vnni", "avx2"},      {"avx_ifma", "avx2"},
    {"avx_vnni_int8", "avx2"}, {"avx_ne_convert", "avx2"}, {"avx512f", "avx2"},
    {"avx512dq", "avx512f"},   {"avx512ifma", "avx512f"}, {"avx512pf", "avx512f"},
    {"avx512er", "avx512f"},   {"avx512cd", "avx512f"},   {"avx512bw", "avx512f"},
    {"avx512vl", "avx512f"},   {"avx512vbmi", "avx512f"}, {"avx512_vbmi2", "avx512f"},
    {"avx512_vnni", "avx512f"}, {"avx512_bitalg", "avx512f"}, {"avx512_vpopcntdq", "avx512f"},
    {"avx512_4vnniw", "avx512f"}, {"avx512_4fmaps", "avx512f"}, {"avx512_vp2intersect", "avx512f"},
    {"avx512_fp16", "avx512bw"}, {"avx512_bf16", "avx512f"}, {"amx_bf16", "amx_tile"},
}};

void normalize_topology(Profile& p, unsigned ncpus) {
  const unsigned n = ncpus ? ncpus : 1;
  if (Regs* r = p.find(kLeafFeatures)) {
    r->ebx = (r->ebx & ~(kLogicalCountMask | (0xffu << kApicIdShift))) | (std::min(n, 255u) << kLogicalCountShift);
  }
  set(p, *find_feature("ht"), n > 1);
  set(p, *find_feature("cmp_legacy"), false);
  for (uint32_t leaf : {kLeafCacheParams, kLeafAmdCacheTopo}) {
    for (auto& [k, r] : p.leaves) {
      if (k.leaf != leaf || (r.eax & kCacheTypeMask) == 0) continue;
      unsigned level = (r.eax >> kCacheLevelShift) & kCacheLevelMask;
      uint32_t sharing = level >= 3 ? std::min(n - 1, 0xfffu) : 0;
      r.eax = (r.eax & ~kSharingMask) | (sharing << kSharingShift);
      if (leaf == kLeafCacheParams) r.eax = (r.eax & ~kCoresMask) | (std::min(n - 1, 63u) << kCoresShift);
    }
  }
  for (uint32_t leaf : {kLeafTopology, kLeafTopologyV2}) {
    if (!p.find(leaf, 0) && !(leaf == kLeafTopology && p.max_basic() >= kLeafTopology)) continue;
    p.erase_leaf(leaf);
    p.at(leaf, 0) = Regs{0, 1, (kTopoTypeSmt << kTopoTypeShift) | 0, 0};
    p.at(leaf, 1) = Regs{ceil_log2(n), n, (kTopoTypeCore << kTopoTypeShift) | 1, 0};
    p.at(leaf, 2) = Regs{0, 0, 2, 0};
  }
  if (p.is_amd()) {
    if (Regs* r = p.find(kLeafAddrSizes)) {
      r->ecx = (r->ecx & ~(kAmdNcMask | kAmdApicIdSizeMask)) | (n - 1) | (n > 1 ? ceil_log2(n) << kAmdApicIdSizeShift : 0);
    }
    if (Regs* r = p.find(kLeafAmdTopoExt)) *r = Regs{};  // one thread per core, node 0
  }
}

// PMU off: KVM guests here get no performance counters (and leaf 0xA would promise them).
void disable_pmu(Profile& p) {
  p.erase_leaf(kLeafPmu);
  p.erase_leaf(kLeafAmdPerfMonV2);
  for (std::string_view f : {"pdcm", "perfctr_core", "perfctr_nb", "perfctr_llc", "arch_lbr"}) set(p, *find_feature(f), false);
}

}  // namespace

void apply_dependencies(Profile& p) {
  bool changed = true;
  while (changed) {
    changed = false;
    for (const auto& [feature, needs] : kDeps) {
      const Feature& f = *find_feature(feature);
      if (has(p, f) && !has(p, *find_feature(needs))) {
        set(p, f, false);
        changed = true;
      }
    }
  }
  if (!has(p, "intel_pt")) p.erase_leaf(kLeafPt);
  if (!has(p, "topoext")) {
    p.erase_leaf(kLeafAmdCacheTopo);
    p.erase_leaf(kLeafAmdTopoExt);
  }
}

void normalize(Profile& p, const NormalizeOptions& o) {
  apply_dependencies(p);
  disable_pmu(p);
  set(p, *find_feature("hypervisor"), true);
  set(p, *find_feature("osxsave"), false);  // KVM mirrors CR4.OSXSAVE / CR4.PKE at run time
  set(p, *find_feature("ospke"), false);
  if (!o.tsc_pinned) set(p, *find_feature("invtsc"), false);
  normalize_xsave(p);
  normalize_topology(p, o.ncpus);
  if (Regs* r = p.find(kLeafAddrSizes); r && o.max_phys_bits && (r->eax & kPhysBitsMask) > o.max_phys_bits)
    r->eax = (r->eax & ~kPhysBitsMask) | o.max_phys_bits;
  if (p.is_amd()) {
    if (Regs* ext = p.find(kLeafExtFeatures1))
      ext->edx = (ext->edx & ~kAmdEdxMirror) | (p.get(kLeafFeatures).edx & kAmdEdxMirror);
  }
}

void apply_apic_id(std::vector<kvm_cpuid_entry2>& entries, unsigned apic_id) {
  for (kvm_cpuid_entry2& e : entries) {
    if (e.function == kLeafFeatures) {
      e.ebx = (e.ebx & ~(0xffu << kApicIdShift)) | ((apic_id & 0xffu) << kApicIdShift);
    } else if (e.function == kLeafTopology || e.function == kLeafTopologyV2) {
      e.edx = apic_id;
    } else if (e.function == kLeafAmdTopoExt) {
      e.eax = apic_id;                           // extended APIC id
      e.ebx = (e.ebx & ~0xffu) | (apic_id & 0xffu);  // core id: one thread per core
    }
  }
}

}  // namespace minihv::cpuid
