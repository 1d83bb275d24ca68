// Profiles: JSON round trip, malformed input with file and position, raw dump import, KVM entries.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "tests/unit/cpuid_test_data.h"

namespace minihv::cpuid {
namespace {

using test::load;

TEST(CpuidProfile, JsonRoundTripKeepsEveryProfile) {
  for (const std::string& name : test::profile_names()) {
    Profile p = load(name);
    auto back = parse_profile(to_json(p, "test").dump(), "mem");
    ASSERT_TRUE(back.is_ok()) << back.message();
    EXPECT_EQ(*back, p) << name;
  }
}

// `cpuid compare --guest` reads what `cpuid show --json` printed (and a VM's status): the profile a
// guest under the model can execute, the one a migration compares.
TEST(CpuidProfile, ShowAndStatusOutputLoadAsTheGuestsProfile) {
  auto g = build_for_vm("x86-64-v2", test::host_of(load("intel-skylake-sp-xeon-gold-6154")), {});
  ASSERT_TRUE(g.is_ok()) << g.message();
  nlohmann::json show = status_json(*g);
  show["table"] = to_json(g->table);
  auto from_show = parse_profile(show.dump(2), "show.json");
  ASSERT_TRUE(from_show.is_ok()) << from_show.message();
  EXPECT_EQ(*from_show, g->effective);
  auto from_status = profile_from_json({{"state", "running"}, {"cpu", status_json(*g)}}, "status.json");
  ASSERT_TRUE(from_status.is_ok()) << from_status.message();
  EXPECT_EQ(*from_status, g->effective);
  auto neither = profile_from_json({{"vendor", "GenuineIntel"}}, "x.json");
  ASSERT_FALSE(neither.is_ok());
  EXPECT_NE(neither.message().find("leaves"), std::string::npos) << neither.message();
}

TEST(CpuidProfile, KvmEntriesRoundTripAndMarkIndexedLeaves) {
  Profile p = load("intel-skylake-sp-xeon-gold-6154");
  auto entries = p.to_kvm();
  EXPECT_EQ(Profile::from_kvm(entries), p);
  for (const auto& e : entries) {
    bool indexed = e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    EXPECT_EQ(indexed, is_indexed(e.function)) << std::hex << e.function;
  }
}

TEST(CpuidProfile, MalformedJsonNamesFileAndPosition) {
  auto r = parse_profile("{\n  \"vendor\": \"GenuineIntel\",\n  \"leaves\": [ 1, ]\n}", "bad.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(r.status().is_invalid_input());
  EXPECT_NE(r.message().find("bad.json: byte"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("line 3"), std::string::npos) << r.message();
}

TEST(CpuidProfile, WrongValueNamesItsPath) {
  nlohmann::json j = to_json(load("amd-zen3-epyc-7713"));
  j["leaves"][2]["ecx"] = "0xZZ";
  auto r = parse_profile(j.dump(), "p.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("p.json: leaves[2].ecx"), std::string::npos) << r.message();

  j = to_json(load("amd-zen3-epyc-7713"));
  j["vendor"] = "GenuineIntel";
  r = parse_profile(j.dump(), "p.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("does not match leaf 0"), std::string::npos) << r.message();

  j = to_json(load("amd-zen3-epyc-7713"));
  j["leaves"][1]["subleaf"] = 3;  // leaf 1 has no subleaves
  r = parse_profile(j.dump(), "p.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("leaves[1].subleaf"), std::string::npos) << r.message();
}

TEST(CpuidProfile, LoadProfileReportsMissingFile) {
  auto r = load_profile("/nonexistent/x.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.message().find("/nonexistent/x.json"), std::string::npos);
}

TEST(CpuidImport, AidaFormatKeepsSubleavesAndDropsBeyondMax) {
  Profile p = load("amd-zen4-epyc-9124");
  EXPECT_EQ(p.vendor, "AuthenticAMD");
  EXPECT_EQ(p.family(), 0x19u);
  EXPECT_EQ(p.model(), 0x11u);
  EXPECT_EQ(p.get(0xD, 7).eax, 0x400u);  // AVX-512 Hi16_ZMM state, subleaf 7
  EXPECT_EQ(p.get(0x7, 1).eax, 0x20u);   // avx512_bf16
  EXPECT_EQ(p.find(0x8fffffff), nullptr);
  EXPECT_EQ(p.phys_bits(), 52u);
}

TEST(CpuidImport, LibcpuidFormatTrimsGarbageAndTakesSubleaves) {
  Profile p = load("intel-haswell-i7-4710mq");
  EXPECT_EQ(p.vendor, "GenuineIntel");
  EXPECT_EQ(p.model(), 0x3Cu);
  EXPECT_EQ(p.find(0xE), nullptr);           // above max basic leaf 0xD
  EXPECT_EQ(p.find(0x80000009), nullptr);    // above max extended leaf
  EXPECT_EQ(p.get(0x4, 3).eax, 0x1c03c163u);  // intel_fn4[3]
  EXPECT_EQ(p.get(0xB, 1).ebx, 8u);           // intel_fn11[1]
  EXPECT_TRUE(has(p, "syscall"));             // restored: Intel hides it from 32-bit dumpers
}

TEST(CpuidImport, CpuidToolFormatReadsBackOurOwnTable) {
  Profile p = load("amd-zen3-epyc-7713");
  auto back = import_dump(render_table(p), "rendered");
  ASSERT_TRUE(back.is_ok()) << back.message();
  EXPECT_EQ(*back, p);
}

TEST(CpuidImport, RejectsTextWithoutDump) {
  auto r = import_dump("hello\nworld\n", "x.txt");
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(r.status().is_invalid_input());
  EXPECT_NE(r.message().find("x.txt"), std::string::npos);
}

TEST(CpuidFeatures, NamesAreUniqueAndBitsDoNotCollide) {
  auto all = all_features();
  for (size_t i = 0; i < all.size(); ++i)
    for (size_t j = i + 1; j < all.size(); ++j) {
      EXPECT_NE(all[i].name, all[j].name);
      EXPECT_FALSE(all[i].leaf == all[j].leaf && all[i].subleaf == all[j].subleaf && all[i].reg == all[j].reg &&
                   all[i].bit == all[j].bit)
          << all[i].name << " and " << all[j].name;
    }
}

TEST(CpuidFeatures, KnownBitsDecodeFromRealDumps) {
  Profile skx = load("intel-skylake-sp-xeon-gold-6154");
  for (const char* f : {"sse4_2", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "pku", "clwb", "xsaves", "lm", "nx"})
    EXPECT_TRUE(has(skx, f)) << f;
  for (const char* f : {"sse4a", "avx512_vnni", "sha_ni", "xop"}) EXPECT_FALSE(has(skx, f)) << f;
  // Intel reports LZCNT in AMD's ABM bit.
  Profile hsw = load("intel-haswell-i7-4710mq");
  EXPECT_TRUE(has(hsw, "abm"));
  Profile pd = load("amd-piledriver-fx-9590");
  for (const char* f : {"sse4a", "xop", "fma4", "tbm", "misalignsse", "avx", "fma"}) EXPECT_TRUE(has(pd, f)) << f;
  EXPECT_FALSE(has(pd, "avx2"));
}

TEST(CpuidFeatures, UnknownNameSuggestsClosest) {
  auto r = lookup_feature("sse42");
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(r.status().is_invalid_input());
  EXPECT_NE(r.message().find("sse4_2"), std::string::npos) << r.message();
  EXPECT_TRUE(lookup_feature("avx2").is_ok());
}

}  // namespace
}  // namespace minihv::cpuid
