// Baseline (commutative, idempotent, associative, lowest phys-bits) and compare (every missing
// bit by name, vendor mismatch).
#include <gtest/gtest.h>

#include "tests/unit/cpuid_test_data.h"

namespace minihv::cpuid {
namespace {

using test::load;

Profile base(std::vector<Profile> ps) {
  auto b = baseline(ps);
  EXPECT_TRUE(b.is_ok()) << b.message();
  return b.is_ok() ? *b : Profile{};
}

const std::vector<std::string> kIntel = {"intel-nehalem-xeon-e5520", "intel-haswell-i7-4710mq",
                                         "intel-skylake-sp-xeon-gold-6154"};
const std::vector<std::string> kAmd = {"amd-piledriver-fx-9590", "amd-zen3-epyc-7713", "amd-zen4-epyc-9124"};

TEST(CpuidBaseline, CommutativeAndIdempotentOnEveryPair) {
  for (const auto* vendor : {&kIntel, &kAmd}) {
    for (const std::string& a : *vendor) {
      Profile pa = load(a);
      EXPECT_EQ(base({pa, pa}), pa) << a;
      for (const std::string& b : *vendor) {
        Profile pb = load(b);
        Profile ab = base({pa, pb});
        EXPECT_EQ(ab, base({pb, pa})) << a << " × " << b;
        EXPECT_EQ(base({ab, pa}), ab) << a << " × " << b;
        EXPECT_EQ(base({ab, ab}), ab) << a << " × " << b;
      }
    }
  }
}

TEST(CpuidBaseline, AssociativeAndOrderFree) {
  Profile a = load(kAmd[0]), b = load(kAmd[1]), c = load(kAmd[2]);
  EXPECT_EQ(base({base({a, b}), c}), base({a, base({b, c})}));
  EXPECT_EQ(base({a, b, c}), base({c, a, b}));
}

TEST(CpuidBaseline, IsTheIntersectionWithTheLowestPhysBits) {
  Profile hsw = load("intel-haswell-i7-4710mq"), skx = load("intel-skylake-sp-xeon-gold-6154");
  Profile b = base({hsw, skx});
  for (const Feature& f : all_features()) EXPECT_EQ(has(b, f), has(hsw, f) && has(skx, f)) << f.name;
  EXPECT_EQ(b.phys_bits(), 39u);
  EXPECT_EQ(b.max_basic(), 0xDu);
  EXPECT_TRUE(has(b, "avx2"));
  EXPECT_FALSE(has(b, "avx512f"));
  // The baseline runs x86-64-v3 (both have it) and not v4.
  EXPECT_TRUE(build_for_vm("x86-64-v3", test::host_of(b), {}).is_ok());
  EXPECT_FALSE(build_for_vm("x86-64-v4", test::host_of(b), {}).is_ok());
}

TEST(CpuidBaseline, KvmParavirtFeaturesAreTheCommonSet) {
  Profile a = load("amd-zen3-epyc-7713"), b = a;
  a.at(kLeafHvBase) = Regs{kLeafKvmFeatures, 0x4b4d564b, 0x564b4d56, 0x4d};
  b.at(kLeafHvBase) = a.get(kLeafHvBase);
  a.at(kLeafKvmFeatures).eax = 0x01007efb;
  b.at(kLeafKvmFeatures).eax = 0x00000efb;  // an older KVM: no stable bit, no pv_ipi...
  Profile c = base({a, b});
  EXPECT_EQ(c.get(kLeafKvmFeatures).eax, 0x00000efbu);
  EXPECT_FALSE(has(c, "kvmclock_stable_bit"));
}

TEST(CpuidBaseline, RefusesMixedVendors) {
  auto r = baseline(std::vector<Profile>{load(kIntel[0]), load(kAmd[0])});
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("no compatibility across vendors"), std::string::npos) << r.message();
}

TEST(CpuidCompare, FindsEachMissingBitByName) {
  Profile host = load("intel-skylake-sp-xeon-gold-6154");
  EXPECT_TRUE(compare(host, host).compatible());
  int checked = 0;
  for (const Feature& f : all_features()) {
    if (is_normalised(f.name)) continue;
    Profile h = host, g = host;
    set(h, f, false);
    set(g, f, true);
    Comparison c = compare(g, h);
    ASSERT_FALSE(c.compatible()) << f.name;
    ASSERT_EQ(c.missing, std::vector<std::string>{std::string(f.name)});
    EXPECT_NE(c.describe().find(std::string(f.name)), std::string::npos);
    ++checked;
  }
  EXPECT_GT(checked, 250);
}

TEST(CpuidCompare, NewerGuestOnOlderHostListsTheDifference) {
  Comparison c = compare(load("amd-zen4-epyc-9124"), load("amd-zen3-epyc-7713"));
  EXPECT_FALSE(c.compatible());
  for (const char* f : {"avx512f", "avx512_bf16", "xstate_opmask", "la57"})
    EXPECT_NE(std::find(c.missing.begin(), c.missing.end(), f), c.missing.end()) << f;
  EXPECT_EQ(c.guest_phys_bits, 52u);
  EXPECT_NE(c.describe().find("guest physical address bits 52 > host 48"), std::string::npos) << c.describe();
  EXPECT_TRUE(compare(load("amd-zen3-epyc-7713"), load("amd-zen3-epyc-7713")).compatible());
}

TEST(CpuidCompare, NamesVendorMismatch) {
  Comparison c = compare(load("intel-nehalem-xeon-e5520"), load("amd-zen4-epyc-9124"));
  EXPECT_TRUE(c.vendor_mismatch);
  EXPECT_FALSE(c.compatible());
  EXPECT_NE(c.describe().find("vendor mismatch (guest GenuineIntel, host AuthenticAMD)"), std::string::npos)
      << c.describe();
}

TEST(CpuidCompare, ModelGuestFitsEveryHostThatCanRunTheModel) {
  // A VM started with x86-64-v3 on Skylake-SP has every feature a Haswell host gives, not Nehalem's.
  auto g = build_for_vm("x86-64-v3", test::host_of(load("intel-skylake-sp-xeon-gold-6154")), {});
  ASSERT_TRUE(g.is_ok());
  // As KVM offers it: KVM emulates x2APIC on every host (this laptop's firmware hid it).
  Profile hsw = load("intel-haswell-i7-4710mq");
  set(hsw, *find_feature("x2apic"), true);
  auto on_hsw = build_for_vm("host", test::host_of(hsw), {});
  Comparison to_hsw = compare(g->table, on_hsw->table);
  EXPECT_TRUE(to_hsw.missing.empty()) << to_hsw.describe();
  // ... but Skylake-SP gives 46 physical address bits, Haswell 39: the baseline model fixes that.
  EXPECT_FALSE(to_hsw.compatible());
  EXPECT_NE(to_hsw.describe().find("physical address bits 46 > host 39"), std::string::npos) << to_hsw.describe();
  auto on_nhm = build_for_vm("host", test::host_of(load("intel-nehalem-xeon-e5520")), {});
  Comparison c = compare(g->table, on_nhm->table);
  EXPECT_FALSE(c.compatible());
  EXPECT_NE(std::find(c.missing.begin(), c.missing.end(), "avx2"), c.missing.end());
}

}  // namespace
}  // namespace minihv::cpuid
