// cpuid/baseline.h — the common feature set of several hosts, and whether a guest fits a host.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

// The intersection of same-vendor profiles: every feature register ANDed, the lowest maximum
// leaves and physical/linear address bits, and for each other leaf the lowest value any profile
// reports (so the result does not depend on argument order, and baseline(x, x) == x).
// Different vendors → Status::invalid naming them.
Result<Profile> baseline(std::span<const Profile> profiles);

struct Comparison {
  bool vendor_mismatch = false;
  std::string guest_vendor, host_vendor;
  std::vector<std::string> missing;  // features the guest sees that the host cannot give
  unsigned guest_phys_bits = 0, host_phys_bits = 0;
  bool compatible() const { return !vendor_mismatch && missing.empty() && guest_phys_bits <= host_phys_bits; }
  std::string describe() const;  // one paragraph, for the CLI and for a refused migration
};

Comparison compare(const Profile& guest, const Profile& host);

}  // namespace minihv::cpuid
