// Shared by the cpuid unit tests: the real CPU profiles in tests/data/cpuid/.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cpuid/cpuid.h"

namespace minihv::cpuid::test {

inline std::string data_dir() { return std::string(MINIHV_SOURCE_DIR) + "/tests/data/cpuid"; }

inline const std::vector<std::string>& profile_names() {
  static const std::vector<std::string> names = {
      "intel-nehalem-xeon-e5520", "intel-haswell-i7-4710mq", "intel-skylake-sp-xeon-gold-6154",
      "amd-piledriver-fx-9590",   "amd-zen3-epyc-7713",      "amd-zen4-epyc-9124"};
  return names;
}

inline Profile load(const std::string& name) {
  auto p = import_dump_file(data_dir() + "/" + name + ".txt");
  EXPECT_TRUE(p.is_ok()) << p.message();
  return p.is_ok() ? *p : Profile{};
}

// A host whose KVM offers exactly this processor (hardware KVM: the model is enforced).
inline HostCpu host_of(const Profile& p) { return HostCpu{p, p, Enforcement{}}; }

inline const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"host", "compat", "x86-64-v1", "x86-64-v2", "x86-64-v3", "x86-64-v4"};
  return names;
}

}  // namespace minihv::cpuid::test
