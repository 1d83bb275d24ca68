// Runs in the hw lane (scripts/hw-lane): a KVM that enforces CPUID for all guest code (SVM traps
// every CPUID). The test guest's `cpuid` (ring 0) and `cpuid3` (ring 3) workloads see exactly the
// model's table — every feature the guest can name is shown if and only if the model grants it —
// for the psABI levels, `compat`, and a JSON profile (a baseline of this CPU and an older AMD).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "cpuid/cpuid.h"
#include "tests/harness/harness.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;
namespace cp = minihv::cpuid;

// The names the test guest can print: every string in its table (guest/testguest/cpuid_names.c).
std::set<std::string> guest_known_names() {
  std::ifstream f(source_dir() + "/guest/testguest/cpuid_names.c");
  std::stringstream all;
  all << f.rdbuf();
  const std::string text = all.str();
  std::set<std::string> names;
  static const std::regex quoted("\"([a-z0-9_]+)\"");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), quoted); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1]);
  return names;
}

// The model's table as `minihv cpuid show` computes it for this host and one vCPU.
cp::Profile model_table(const std::string& model) {
  VmProcess show({"cpuid", "show", "--model", model, "--cpus", "1", "--json"});
  EXPECT_EQ(show.wait_exit(60s), 0) << show.stderr_text();
  auto j = nlohmann::json::parse(show.stdout_text(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << show.stdout_text();
  auto p = cp::profile_from_json(j.is_discarded() ? nlohmann::json() : j["table"], "cpuid show");
  EXPECT_TRUE(p.is_ok()) << p.message();
  return p.is_ok() ? *p : cp::Profile{};
}

// A JSON profile: the baseline of this host's CPU and an older AMD processor (Piledriver).
std::string baseline_profile(const TempDir& dir) {
  VmProcess host({"cpuid", "host", "--json"});
  EXPECT_EQ(host.wait_exit(60s), 0) << host.stderr_text();
  std::ofstream(dir.file("host.json")) << host.stdout_text();
  VmProcess base({"cpuid", "baseline", dir.file("host.json"),
                  source_dir() + "/tests/data/cpuid/amd-piledriver-fx-9590.txt", "-o", dir.file("baseline.json")});
  EXPECT_EQ(base.wait_exit(60s), 0) << base.stderr_text();
  return dir.file("baseline.json");
}

struct Case {
  const char* workload;  // cpuid (ring 0) or cpuid3 (ring 3)
  const char* model;     // a model name, or "baseline" for the JSON profile
};

class HwCpuModel : public ::testing::TestWithParam<Case> {};

TEST_P(HwCpuModel, TheGuestSeesExactlyTheModelsTable) {
  TempDir dir;
  const std::string model = std::string(GetParam().model) == "baseline" ? baseline_profile(dir) : GetParam().model;
  const cp::Profile table = model_table(model);
  const std::set<std::string> seen = guest_cpuid_flags(GetParam().workload, model);
  ASSERT_FALSE(seen.empty());
  const std::set<std::string> known = guest_known_names();
  // Set by the processor from the guest's own CR4, not by any table.
  const std::set<std::string> dynamic = {"osxsave", "ospke"};
  size_t checked = 0;
  for (const cp::Feature& f : cp::all_features()) {
    const std::string name(f.name);
    if (!known.count(name) || dynamic.count(name)) continue;
    EXPECT_EQ(seen.count(name) == 1, cp::has(table, f)) << GetParam().workload << " under " << model << ": " << name;
    ++checked;
  }
  EXPECT_GT(checked, 100u) << "the guest's name table was not read";
  for (const std::string& n : seen) EXPECT_TRUE(known.count(n)) << "the guest printed an unknown name: " << n;
}

INSTANTIATE_TEST_SUITE_P(
    Models, HwCpuModel,
    ::testing::Values(Case{"cpuid", "x86-64-v1"}, Case{"cpuid3", "x86-64-v1"}, Case{"cpuid", "x86-64-v2"},
                      Case{"cpuid3", "x86-64-v2"}, Case{"cpuid", "compat"}, Case{"cpuid3", "compat"},
                      Case{"cpuid", "baseline"}, Case{"cpuid3", "baseline"}),
    [](const ::testing::TestParamInfo<Case>& i) {
      std::string n = std::string(i.param.workload) + "_" + i.param.model;
      for (char& c : n)
        if (c == '-') c = '_';
      return n;
    });

}  // namespace
}  // namespace minihv::test
