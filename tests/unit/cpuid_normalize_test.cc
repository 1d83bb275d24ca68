// Normalisation: leaf 0xD consistent with the features left, topology from the vCPU count,
// dependencies, invariant TSC, PMU off, per-vCPU APIC ids.
#include <gtest/gtest.h>

#include "tests/unit/cpuid_test_data.h"

namespace minihv::cpuid {
namespace {

using test::host_of;
using test::load;

// What leaf 0xD must say, checked independently of xsave.cc.
void expect_xsave_consistent(const Profile& p, const std::string& what) {
  if (!has(p, "xsave")) {
    EXPECT_EQ(p.find(0xD, 0), nullptr) << what;
    return;
  }
  const Regs d0 = p.get(0xD, 0);
  const uint64_t xcr0 = d0.eax | (uint64_t{d0.edx} << 32);
  EXPECT_EQ(xcr0 & 3, 3u) << what << ": x87 and SSE state always";
  EXPECT_EQ(bool(xcr0 & (1u << 2)), has(p, "avx")) << what;
  EXPECT_EQ(bool(xcr0 & (7u << 5)), has(p, "avx512f")) << what;
  if (has(p, "avx512f")) {
    EXPECT_EQ(xcr0 & (7u << 5), 7u << 5) << what;
  }
  EXPECT_EQ(bool(xcr0 & (1u << 9)), has(p, "pku")) << what;
  uint32_t max_end = 576;
  for (unsigned i = 2; i < 63; ++i) {
    const Regs* sub = p.find(0xD, i);
    const Regs d1 = p.get(0xD, 1);
    const uint64_t xss = d1.ecx | (uint64_t{d1.edx} << 32);
    const bool enabled = ((xcr0 | xss) >> i) & 1;
    EXPECT_EQ(sub != nullptr, enabled) << what << ": subleaf " << i;
    if (sub && ((xcr0 >> i) & 1)) {
      EXPECT_GT(sub->eax, 0u) << what << ": component " << i << " has a size";
      EXPECT_GE(sub->ebx, 576u) << what << ": component " << i << " lies after the legacy area and header";
      max_end = std::max(max_end, sub->eax + sub->ebx);
    }
  }
  EXPECT_EQ(d0.ecx, max_end) << what << ": ECX is the size for every XCR0 component";
  EXPECT_EQ(d0.ebx, max_end) << what;
  // Every named XSAVE state feature agrees with the bits.
  for (const Feature& f : all_features())
    if (f.kind == FeatureKind::kXsaveState && f.reg == Reg::kEax && f.subleaf == 0) {
      EXPECT_EQ(has(p, f), bool((xcr0 >> f.bit) & 1)) << what << ": " << f.name;
    }
}

TEST(CpuidNormalize, LeafDIsConsistentForEveryModelAndProfile) {
  for (const std::string& profile : test::profile_names())
    for (const std::string& model : test::model_names()) {
      auto g = build_for_vm(model, host_of(load(profile)), {});
      if (!g) continue;  // the level is above this processor: MatchesGoldenFile pins the error
      expect_xsave_consistent(g->table, profile + " " + model);
    }
}

TEST(CpuidNormalize, LeafDShrinksWhenAvx512IsHidden) {
  Profile skx = load("intel-skylake-sp-xeon-gold-6154");
  auto v4 = build_for_vm("x86-64-v4", host_of(skx), {}), v3 = build_for_vm("x86-64-v3", host_of(skx), {});
  ASSERT_TRUE(v4.is_ok() && v3.is_ok());
  EXPECT_EQ(v4->table.get(0xD, 0).eax, 0xe7u);  // x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM
  EXPECT_EQ(v4->table.get(0xD, 0).ecx, 0x680u + 0x400u);  // Hi16_ZMM ends the area (no MPX, no PKRU)
  EXPECT_EQ(v3->table.get(0xD, 0).eax, 0x7u);
  EXPECT_EQ(v3->table.get(0xD, 0).ecx, 576u + 256u);  // legacy + header + YMM upper halves
}

TEST(CpuidNormalize, DependenciesFollowMasking) {
  Profile p = load("amd-zen4-epyc-9124");
  set(p, *find_feature("avx"), false);
  apply_dependencies(p);
  for (const char* f : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "vaes", "vpclmulqdq"})
    EXPECT_FALSE(has(p, f)) << f;
  EXPECT_TRUE(has(p, "sse4_2"));
  EXPECT_TRUE(has(p, "xsave"));
}

TEST(CpuidNormalize, TopologyFollowsTheVcpuCount) {
  for (unsigned n : {1u, 2u, 3u, 8u}) {
    for (const std::string& profile : test::profile_names()) {
      auto g = build_for_vm("host", host_of(load(profile)), BuildOptions{n, false});
      ASSERT_TRUE(g.is_ok());
      const Profile& t = g->table;
      EXPECT_EQ((t.get(1).ebx >> 16) & 0xff, n) << profile;
      EXPECT_EQ(has(t, "ht"), n > 1) << profile;
      EXPECT_TRUE(has(t, "hypervisor")) << profile;
      if (t.max_basic() >= 0xB) {
        EXPECT_EQ(t.get(0xB, 0).ebx, 1u) << profile << ": one thread per core";
        EXPECT_EQ(t.get(0xB, 1).ebx, n) << profile;
        EXPECT_GE(1u << t.get(0xB, 1).eax, n) << profile << ": the core shift covers every APIC id";
        EXPECT_EQ((t.get(0xB, 2).ecx >> 8) & 0xff, 0u) << profile << ": level 2 is the end";
      }
      for (const auto& [k, r] : t.leaves) {
        if (k.leaf == 4 && (r.eax & 0x1f)) {
          EXPECT_EQ(r.eax >> 26, n - 1) << profile;
        }
      }
      if (t.is_amd()) {
        EXPECT_EQ(t.get(0x80000008).ecx & 0xff, n - 1) << profile;
      }
    }
  }
}

TEST(CpuidNormalize, InvariantTscOnlyWhenPinnedAndPmuOff) {
  Profile skx = load("intel-skylake-sp-xeon-gold-6154");
  ASSERT_TRUE(has(skx, "invtsc"));
  ASSERT_NE(skx.find(0xA), nullptr);
  auto g = build_for_vm("host", host_of(skx), {});
  EXPECT_FALSE(has(g->table, "invtsc"));
  EXPECT_EQ(g->table.find(0xA), nullptr);
  EXPECT_FALSE(has(g->table, "pdcm"));
  auto pinned = build_for_vm("host", host_of(skx), BuildOptions{1, true});
  EXPECT_TRUE(has(pinned->table, "invtsc"));
}

TEST(CpuidNormalize, ApicIdIsPatchedPerVcpu) {
  auto g = build_for_vm("host", host_of(load("amd-zen3-epyc-7713")), BuildOptions{4, false});
  ASSERT_TRUE(g.is_ok());
  for (unsigned id : {0u, 3u}) {
    Profile v = Profile::from_kvm(g->entries_for(id));
    EXPECT_EQ(v.get(1).ebx >> 24, id);
    EXPECT_EQ(v.get(0xB, 0).edx, id);
    EXPECT_EQ(v.get(0xB, 1).edx, id);
    EXPECT_EQ(v.get(0x8000001E).eax, id);
  }
}

TEST(CpuidNormalize, AmdMirrorsLeaf1EdxInExtendedLeaf) {
  auto g = build_for_vm("x86-64-v1", host_of(load("amd-zen3-epyc-7713")), {});
  ASSERT_TRUE(g.is_ok());
  constexpr uint32_t kMirror = 0x3ffu | (0x3fu << 12) | (1u << 23) | (1u << 24);
  EXPECT_EQ(g->table.get(0x80000001).edx & kMirror, g->table.get(1).edx & kMirror);
  auto intel = build_for_vm("x86-64-v1", host_of(load("intel-haswell-i7-4710mq")), {});
  EXPECT_EQ(intel->table.get(0x80000001).edx & kMirror, 0u) << "reserved on Intel";
}

}  // namespace
}  // namespace minihv::cpuid
