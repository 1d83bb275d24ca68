// Models on real CPU profiles: golden tables for every model × profile, the psABI levels, compat,
// missing-feature errors, the advisory rule, and docs/cpu-models.md being current.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/unit/cpuid_test_data.h"

namespace minihv::cpuid {
namespace {

using test::host_of;
using test::load;

constexpr unsigned kGoldenCpus = 2;

std::string golden_text(const std::string& profile, const std::string& model) {
  auto g = build_for_vm(model, host_of(load(profile)), BuildOptions{kGoldenCpus, false});
  if (!g) return "error: " + g.message() + "\n";
  return "features:\n" + wrap_names(enabled_features(g->table), "  ") + "table:\n" + render_table(g->table);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return in ? ss.str() : "";
}

class CpuidGolden : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(CpuidGolden, MatchesGoldenFile) {
  const auto& [profile, model] = GetParam();
  const std::string path = test::data_dir() + "/golden/" + profile + "." + model + ".txt";
  const std::string got = golden_text(profile, model);
  if (std::getenv("MINIHV_UPDATE_GOLDEN")) {
    std::ofstream(path) << got;
    GTEST_SKIP() << "wrote " << path;
  }
  const std::string want = read_file(path);
  ASSERT_FALSE(want.empty()) << path << " is missing: run with MINIHV_UPDATE_GOLDEN=1 and review it";
  EXPECT_EQ(got, want) << "model " << model << " on " << profile << " changed; if intended, regenerate with "
                       << "MINIHV_UPDATE_GOLDEN=1 and review the diff";
}

INSTANTIATE_TEST_SUITE_P(AllModelsAllProfiles, CpuidGolden,
                         ::testing::Combine(::testing::ValuesIn(test::profile_names()),
                                            ::testing::ValuesIn(test::model_names())),
                         [](const auto& param_info) {
                           std::string n = std::get<0>(param_info.param) + "_" + std::get<1>(param_info.param);
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// The highest psABI level each test processor reaches: the data sheets say so.
TEST(CpuidModels, PsabiLevelsMatchTheProcessors) {
  const std::map<std::string, int> level = {
      {"intel-nehalem-xeon-e5520", 2}, {"intel-haswell-i7-4710mq", 3}, {"intel-skylake-sp-xeon-gold-6154", 4},
      {"amd-piledriver-fx-9590", 2},   {"amd-zen3-epyc-7713", 3},      {"amd-zen4-epyc-9124", 4}};
  for (const auto& [profile, top] : level) {
    for (int v = 1; v <= 4; ++v) {
      auto g = build_for_vm("x86-64-v" + std::to_string(v), host_of(load(profile)), {});
      EXPECT_EQ(g.is_ok(), v <= top) << profile << " v" << v << ": " << (g.is_ok() ? "ok" : g.message());
    }
  }
}

TEST(CpuidModels, V2HasSse42ButNoAvxFmaMovbeF16c) {
  for (const std::string& profile : test::profile_names()) {
    auto g = build_for_vm("x86-64-v2", host_of(load(profile)), {});
    ASSERT_TRUE(g.is_ok()) << g.message();
    for (const char* f : {"sse4_2", "sse4_1", "ssse3", "popcnt", "cx16", "lahf_lm", "pni"}) EXPECT_TRUE(has(g->table, f)) << f;
    for (const char* f : {"avx", "fma", "movbe", "f16c", "avx2", "xsave", "aes", "pclmulqdq", "sse4a", "rdtscp"})
      EXPECT_FALSE(has(g->table, f)) << profile << ": " << f;
    EXPECT_EQ(g->table.find(0xD), nullptr) << "no XSAVE, no leaf 0xD";
  }
}

TEST(CpuidModels, CompatHidesTheDocumentedListPerVendor) {
  for (const std::string& profile : test::profile_names()) {
    Profile host = load(profile);
    auto g = build_for_vm("compat", host_of(host), {});
    ASSERT_TRUE(g.is_ok()) << g.message();
    for (const char* f : {"ssse3", "sse4_1", "sse4_2", "popcnt", "xsave", "avx", "avx2", "aes", "movbe"})
      EXPECT_FALSE(has(g->table, f)) << profile << ": " << f;
    for (const char* f : {"sse4a", "abm", "misalignsse", "3dnow", "3dnowext", "3dnowprefetch"})
      EXPECT_FALSE(has(g->table, f)) << profile << ": " << f;
    for (const char* f : {"sse2", "pni", "cx16", "lm", "nx", "syscall"}) EXPECT_TRUE(has(g->table, f)) << profile << ": " << f;
    EXPECT_EQ(has(g->table, "rdtscp"), host.is_amd()) << profile;  // K8 rev F had it; the first VT-x P4 did not
  }
  // Every profile of one vendor gives the same compat feature set: that is the point of compat.
  // (Platform features KVM emulates — x2apic, TSC deadline, ARAT — follow the host's KVM, not the
  // processor generation; real KVM offers them everywhere, these bare-metal dumps do not.)
  auto features = [](const std::string& p) {
    Profile t = build_for_vm("compat", host_of(load(p)), {})->table;
    const std::vector<std::string_view> platform = builtin_model("compat", t.vendor).value().optional;
    for (std::string_view n : platform) set(t, *find_feature(n), false);
    return enabled_features(t);
  };
  EXPECT_EQ(features("intel-nehalem-xeon-e5520"), features("intel-skylake-sp-xeon-gold-6154"));
  EXPECT_EQ(features("amd-piledriver-fx-9590"), features("amd-zen4-epyc-9124"));
}

TEST(CpuidModels, MissingFeaturesAreListedNotDowngraded) {
  auto g = build_for_vm("x86-64-v4", host_of(load("amd-zen3-epyc-7713")), {});
  ASSERT_FALSE(g.is_ok());
  EXPECT_TRUE(g.status().is_invalid_input());
  EXPECT_NE(g.message().find("avx512f, avx512bw, avx512cd, avx512dq, avx512vl"), std::string::npos) << g.message();
}

// A model requires what its psABI level defines, nothing more: an emulated AMD processor without
// VME or FXSR optimisations (QEMU TCG's `max`) runs every level and compat; the features it lacks
// are simply not granted, the ones it has are.
TEST(CpuidModels, ALevelRequiresOnlyWhatItDefines) {
  Profile tcg = load("amd-zen3-epyc-7713");
  for (const char* missing : {"vme", "de", "pse36", "fxsr_opt", "mmxext", "rdtscp"}) set(tcg, *find_feature(missing), false);
  for (const char* model : {"x86-64-v1", "x86-64-v2", "x86-64-v3", "compat"}) {
    auto g = build_for_vm(model, host_of(tcg), {});
    ASSERT_TRUE(g.is_ok()) << model << ": " << g.message();
    EXPECT_FALSE(has(g->table, "vme")) << model;
    EXPECT_FALSE(has(g->table, "fxsr_opt")) << model;
    EXPECT_TRUE(has(g->table, "pae")) << model << ": present on the host, granted";
    EXPECT_TRUE(has(g->table, "sse2")) << model;
  }
  // What a level defines stays required.
  set(tcg, *find_feature("sse4_2"), false);
  auto v2 = build_for_vm("x86-64-v2", host_of(tcg), {});
  ASSERT_FALSE(v2.is_ok());
  EXPECT_NE(v2.message().find("needs features this host cannot give: sse4_2"), std::string::npos) << v2.message();
}

TEST(CpuidModels, UnknownModelSuggestsClosest) {
  auto g = build_for_vm("x86-64-v5", host_of(load("amd-zen3-epyc-7713")), {});
  ASSERT_FALSE(g.is_ok());
  EXPECT_TRUE(g.status().is_invalid_input());
  EXPECT_NE(g.message().find("did you mean: x86-64-v"), std::string::npos) << g.message();
  g = build_for_vm("compt", host_of(load("amd-zen3-epyc-7713")), {});
  EXPECT_NE(g.message().find("compat"), std::string::npos) << g.message();
}

TEST(CpuidModels, ProfileFileModelGrantsExactlyItsFeatures) {
  // The baseline of Haswell and Skylake-SP as a model on the Skylake-SP host: Haswell's level.
  Profile hsw = load("intel-haswell-i7-4710mq"), skx = load("intel-skylake-sp-xeon-gold-6154");
  std::vector<Profile> both{hsw, skx};
  auto b = baseline(both);
  ASSERT_TRUE(b.is_ok());
  const std::string path = ::testing::TempDir() + "/cpuid_baseline_model.json";
  std::ofstream(path) << to_json(*b).dump();
  auto g = build_for_vm(path, host_of(skx), {});
  ASSERT_TRUE(g.is_ok()) << g.message();
  EXPECT_TRUE(has(g->table, "avx2"));
  EXPECT_FALSE(has(g->table, "avx512f"));
  EXPECT_EQ(g->table.phys_bits(), 39u);  // the lowest of the two
  // ... and on a host that lacks what the file grants, the error names it.
  auto on_nehalem = build_for_vm(path, host_of(load("intel-nehalem-xeon-e5520")), {});
  ASSERT_FALSE(on_nehalem.is_ok());
  EXPECT_NE(on_nehalem.message().find("avx2"), std::string::npos) << on_nehalem.message();
  // A profile of the other vendor is refused as such.
  auto on_amd = build_for_vm(path, host_of(load("amd-zen4-epyc-9124")), {});
  ASSERT_FALSE(on_amd.is_ok());
  EXPECT_NE(on_amd.message().find("no compatibility across vendors"), std::string::npos) << on_amd.message();
}

TEST(CpuidAdvisory, RuleFollowsTheKvmFlavour) {
  EXPECT_TRUE(decide_enforcement({.kvm_pvm = true, .kvm_hw = false}).advisory);
  EXPECT_TRUE(decide_enforcement({.kvm_pvm = true, .kvm_hw = true}).advisory);
  EXPECT_TRUE(decide_enforcement({.kvm_pvm = false, .kvm_hw = false}).advisory);
  EXPECT_FALSE(decide_enforcement({.kvm_pvm = false, .kvm_hw = true}).advisory);
  EXPECT_NE(decide_enforcement({.kvm_pvm = true}).reason.find("PVM"), std::string::npos);
}

// On an advisory host (KVM offers little, the processor much), models are granted from what the
// processor really has, and the effective profile — what migration compares — is the processor's.
TEST(CpuidAdvisory, ModelsComeFromTheProcessorAndEffectiveIsNative) {
  Profile native = load("amd-zen4-epyc-9124");
  Profile kvm = native;
  for (const char* f : {"sse4_2", "sse4_1", "ssse3", "popcnt", "avx", "avx2", "avx512f", "fma", "movbe"})
    set(kvm, *find_feature(f), false);
  HostCpu pvm{kvm, native, decide_enforcement({.kvm_pvm = true})};
  auto g = build_for_vm("x86-64-v2", pvm, {});
  ASSERT_TRUE(g.is_ok()) << g.message();
  EXPECT_TRUE(g->advisory);
  EXPECT_TRUE(has(g->table, "sse4_2"));
  EXPECT_FALSE(has(g->table, "avx"));
  EXPECT_TRUE(has(g->effective, "avx512f")) << "the guest's ring 3 can use AVX-512 whatever the model says";
  EXPECT_NE(advisory_warning(*g).find("advisory"), std::string::npos);
  auto j = status_json(*g);
  EXPECT_EQ(j["advisory"], true);
  EXPECT_NE(std::find(j["features"].begin(), j["features"].end(), "avx512f"), j["features"].end());
  // The same host with hardware KVM: enforced, effective == table, and v2 fails for lack of sse4_2.
  HostCpu hw{kvm, native, decide_enforcement({.kvm_hw = true})};
  auto enforced = build_for_vm("x86-64-v2", hw, {});
  ASSERT_FALSE(enforced.is_ok());
  EXPECT_NE(enforced.message().find("sse4_2"), std::string::npos);
  auto host_model = build_for_vm("host", hw, {});
  ASSERT_TRUE(host_model.is_ok());
  EXPECT_FALSE(host_model->advisory);
  EXPECT_EQ(host_model->effective, host_model->table);
}

TEST(CpuidDocs, ModelsMarkdownIsCurrent) {
  const std::string path = std::string(MINIHV_SOURCE_DIR) + "/docs/cpu-models.md";
  if (std::getenv("MINIHV_UPDATE_GOLDEN")) std::ofstream(path) << models_markdown();
  EXPECT_EQ(read_file(path), models_markdown())
      << "docs/cpu-models.md is stale: run `minihv cpuid models --markdown > docs/cpu-models.md`";
}

}  // namespace
}  // namespace minihv::cpuid
