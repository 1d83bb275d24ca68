// CPU models under real KVM: what KVM holds after KVM_SET_CPUID2 equals `cpuid show --applied`,
// the test guest's ring-0 CPUID shows the model's leaf-1 ECX, the advisory warning on PVM,
// bad models, and the cpuid subcommands on the real CPU profiles.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "cpuid/cpuid.h"
#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;
namespace cp = minihv::cpuid;

// Runs `minihv args...` to completion; returns (exit status, stdout, stderr).

nlohmann::json run_json(std::vector<std::string> args) {
  MinihvRun r = run_minihv(std::move(args));
  EXPECT_EQ(r.rc, 0) << r.err;
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out << r.err;
    return {};
  }
}

cp::Profile profile_of(const nlohmann::json& j) {
  auto p = cp::profile_from_json(j, "reply");
  EXPECT_TRUE(p.is_ok()) << p.message();
  return p.is_ok() ? *p : cp::Profile{};
}

bool advisory_host() { return cp::decide_enforcement(cp::read_host_facts()).advisory; }

std::string data(const std::string& name) { return source_dir() + "/tests/data/cpuid/" + name + ".txt"; }

// The VM's status while it idles: the `cpu` object. (-v: the advisory warning on every run, not
// once a day.)
nlohmann::json vm_cpu_status(const std::string& model, int cpus, std::string* err = nullptr) {
  TempDir dir;
  VmProcess vm({"run", "-v", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "256M", "--cpus",
                std::to_string(cpus), "--cpu-model", model, "--api", dir.file("api.sock")});
  EXPECT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 30s)) << vm.stdout_text() << vm.stderr_text();
  auto st = api_call(dir.file("api.sock"), {{"cmd", "status"}});
  EXPECT_TRUE(st) << st.message();
  EXPECT_TRUE(api_call(dir.file("api.sock"), {{"cmd", "stop"}}).is_ok());
  EXPECT_EQ(vm.wait_exit(20s), 0) << vm.stderr_text();
  if (err) *err = vm.stderr_text();
  return st ? (*st)["cpu"] : nlohmann::json{};
}

class CpuidModel : public ::testing::TestWithParam<std::string> {};

// Each leaf in which two tables differ, with both values: what a failure should say.
std::string leaf_diff(const cp::Profile& got, const cp::Profile& want) {
  std::set<cp::LeafKey> keys;
  for (const auto& [k, r] : got.leaves) keys.insert(k);
  for (const auto& [k, r] : want.leaves) keys.insert(k);
  std::ostringstream out;
  out << std::hex;
  for (const cp::LeafKey& k : keys) {
    const cp::Regs g = got.get(k.leaf, k.subleaf), w = want.get(k.leaf, k.subleaf);
    if (g == w) continue;
    out << "leaf 0x" << k.leaf << "." << k.subleaf << ": got " << g.eax << " " << g.ebx << " " << g.ecx << " " << g.edx
        << ", want " << w.eax << " " << w.ebx << " " << w.ecx << " " << w.edx << "\n";
  }
  return out.str();
}

// Leaf 0xD subleaves 0 and 1 EBX hold the XSAVE area's size for the features XCR0 (and IA32_XSS)
// enable now, not a property of the model: hardware KVM recomputes them as the guest sets XCR0.
void forget_xsave_sizes(cp::Profile& p) {
  for (uint32_t sub : {0u, 1u})
    if (cp::Regs* r = p.find(cp::kLeafXsave, sub)) r->ebx = 0;
}

// What KVM holds for vCPU 0 of a running VM (status `cpu.applied`, read with KVM_GET_CPUID2 at
// setup) is exactly what `cpuid show --applied` predicts; and it differs from the model's table
// only where KVM turned on bits the processor has (PVM does; hardware KVM must not).
TEST_P(CpuidModel, AppliedTableEqualsCpuidShow) {
  const std::string model = GetParam();
  nlohmann::json cpu = vm_cpu_status(model, 2);
  ASSERT_TRUE(cpu.contains("applied")) << cpu.dump();
  nlohmann::json shown = run_json({"cpuid", "show", "--model", model, "--cpus", "2", "--applied", "--json"});
  nlohmann::json table = run_json({"cpuid", "show", "--model", model, "--cpus", "2", "--json"});
  cp::Profile applied = profile_of(cpu["applied"]);
  EXPECT_EQ(applied, profile_of(shown["applied"])) << leaf_diff(applied, profile_of(shown["applied"]));
  EXPECT_EQ(cpu["model_features"], table["model_features"]);
  EXPECT_EQ(cpu["advisory"], advisory_host());

  const cp::Profile want = profile_of(table["table"]);
  const auto forced = cp::hidden_features(applied, want);
  if (!advisory_host()) {
    cp::Profile held = applied, model_table = want;
    forget_xsave_sizes(held);
    forget_xsave_sizes(model_table);
    EXPECT_EQ(held, model_table) << "hardware KVM must hold exactly the model's table:\n" << leaf_diff(held, model_table);
    return;
  }
  cp::Profile native = cp::native_profile();
  for (const std::string& f : forced) EXPECT_TRUE(cp::has(native, f)) << f << " forced on, but the processor lacks it";
  // PVM replaces whole registers (leaf 7, leaf 0xD) with the processor's values, so a bit KVM
  // itself offered (arch_capabilities on AMD) can vanish: only bits the processor lacks may.
  for (const std::string& f : cp::enabled_features(want)) {
    if (f == "ht") continue;  // topology: KVM may rewrite it
    // PVM takes 5-level paging away (KVM_SET_CPUID2 clears it) even where the processor has it: seen
    // on this machine's kernel 6.18.44-fc-v1272, which `cpuid show --applied` predicts.
    if (f == "la57") continue;
    if (!cp::has(applied, f)) {
      EXPECT_FALSE(cp::has(native, f)) << f << " granted by the model, held by the processor, dropped by KVM";
    }
  }
  std::string list;
  for (const auto& f : forced) list += " " + f;
  RecordProperty("forced_by_kvm", list);
  std::printf("[ info ] %s: PVM turned on %zu features against the model:%s\n", model.c_str(), forced.size(), list.c_str());
}

// The guest's ring-0 CPUID shows leaf 1 ECX exactly as KVM holds it; on a host that enforces
// CPUID, that is the model: compat has no ssse3/sse4_1/sse4_2/popcnt, x86-64-v2 has sse4_2 but
// no avx/fma/movbe/f16c.
TEST_P(CpuidModel, Ring0Leaf1EcxFollowsKvmTable) {
  const std::string model = GetParam();
  const std::set<std::string> seen = guest_cpuid_flags("cpuid", model);
  nlohmann::json shown = run_json({"cpuid", "show", "--model", model, "--cpus", "1", "--applied", "--json"});
  const cp::Profile held = profile_of(shown["applied"]);
  for (const cp::Feature& f : cp::all_features()) {
    if (f.leaf != cp::kLeafFeatures || f.reg != cp::Reg::kEcx || f.name == "osxsave") continue;  // Linux hides osxsave
    EXPECT_EQ(seen.count(std::string(f.name)) == 1, cp::has(held, f)) << model << ": " << f.name;
  }
  const bool enforced = !advisory_host();
  if (model == "compat") {
    for (const char* f : {"pcid", "pdpe1gb", "abm", "sse4a", "misalignsse", "3dnowprefetch"}) EXPECT_EQ(seen.count(f), 0u) << f;
    if (enforced) {
      for (const char* f : {"ssse3", "sse4_1", "sse4_2", "popcnt"}) EXPECT_EQ(seen.count(f), 0u) << f;
    }
  } else if (model == "x86-64-v2") {
    EXPECT_EQ(seen.count("sse4_2"), 1u);
    EXPECT_EQ(seen.count("popcnt"), 1u);
    EXPECT_EQ(seen.count("pcid"), 0u);
    if (enforced) {
      for (const char* f : {"avx", "fma", "movbe", "f16c"}) EXPECT_EQ(seen.count(f), 0u) << f;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CpuidModel, ::testing::Values("host", "compat", "x86-64-v2"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(Cpuid, AdvisoryWarningAndStatus) {
  std::string err;
  nlohmann::json cpu = vm_cpu_status("x86-64-v2", 1, &err);
  EXPECT_EQ(cpu["model"], "x86-64-v2");
  EXPECT_EQ(cpu["advisory"], advisory_host());
  const bool warned = err.find("is advisory on this host") != std::string::npos;
  EXPECT_EQ(warned, advisory_host()) << err;
  if (advisory_host()) {
    EXPECT_NE(cpu["reason"].get<std::string>().find("PVM"), std::string::npos) << cpu["reason"];
    // Migration compares what the guest can really execute: the processor's own features.
    auto native = cp::enabled_features(cp::native_profile());
    EXPECT_EQ(cpu["features"].get<std::vector<std::string>>(), native);
  }
  MinihvRun show = run_minihv({"cpuid", "show", "--model", "x86-64-v2"});
  EXPECT_EQ(show.rc, 0);
  EXPECT_EQ(show.err.find("is advisory on this host") != std::string::npos, advisory_host()) << show.err;
}

TEST(Cpuid, BadModelIsUsageErrorWithClosestNames) {
  MinihvRun r = run_minihv({"run", "--kernel", testguest_elf(), "--cmdline", "cpuid", "--cpu-model", "x86-64-v5"});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("did you mean: x86-64-v"), std::string::npos) << r.err;
  r = run_minihv({"cpuid", "show", "--model", "compt"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("compat"), std::string::npos) << r.err;
  TempDir dir;
  std::ofstream(dir.file("bad.json")) << "{\"vendor\": \"GenuineIntel\",\n \"leaves\": [}";
  r = run_minihv({"cpuid", "compare", "--guest", dir.file("bad.json"), "--host", data("amd-zen3-epyc-7713")});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find(dir.file("bad.json") + ": byte"), std::string::npos) << r.err;
}

TEST(Cpuid, CompareAndBaselineOnRealProfiles) {
  MinihvRun r = run_minihv({"cpuid", "compare", "--guest", data("amd-zen4-epyc-9124"), "--host", data("amd-zen3-epyc-7713")});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("avx512f"), std::string::npos) << r.out;
  r = run_minihv({"cpuid", "compare", "--guest", data("intel-haswell-i7-4710mq"), "--host", data("amd-zen4-epyc-9124")});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("vendor mismatch"), std::string::npos) << r.out;
  TempDir dir;
  r = run_minihv({"cpuid", "baseline", data("amd-zen3-epyc-7713"), data("amd-zen4-epyc-9124"), data("amd-piledriver-fx-9590"),
                  "-o", dir.file("base.json")});
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* host : {"amd-zen3-epyc-7713", "amd-zen4-epyc-9124", "amd-piledriver-fx-9590"}) {
    r = run_minihv({"cpuid", "compare", "--guest", dir.file("base.json"), "--host", data(host)});
    EXPECT_EQ(r.rc, 0) << host << ": " << r.out;
  }
  // The baseline as a CPU model: a VM gets at most that feature set (on one of the three hosts: this
  // machine's CPU need not have every feature of the baseline, an emulated one in the hw lane has not).
  nlohmann::json table = run_json({"cpuid", "show", "--model", dir.file("base.json"), "--host-profile",
                                   data("amd-zen3-epyc-7713"), "--json"});
  auto features = table["model_features"].get<std::vector<std::string>>();
  EXPECT_EQ(std::count(features.begin(), features.end(), "avx2"), 0);  // Piledriver has none
  EXPECT_EQ(std::count(features.begin(), features.end(), "sse4_2"), 1);
}

// Ring-3 CPUID against the model needs a KVM that enforces CPUID for all guest code: that check
// runs in the hw lane (tests/hw/cpuid_models_test.cc), not here on PVM.

}  // namespace
}  // namespace minihv::test
