#include "cpuid/baseline.h"

#include <algorithm>

#include "cpuid/features.h"
#include "cpuid/models.h"

namespace minihv::cpuid {

namespace {

constexpr uint32_t kPhysBitsMask = 0xff, kLinearBitsMask = 0xff00;
constexpr Reg kRegs[] = {Reg::kEax, Reg::kEbx, Reg::kEcx, Reg::kEdx};

bool is_max_leaf(uint32_t leaf) { return leaf == kLeafVendor || leaf == kLeafExtBase; }

// A leaf that is none of the special cases: the lowest (lexicographic) non-feature registers.
Regs min_non_feature(const LeafKey& k, const Regs& a, const Regs& b) {
  auto key = [&](const Regs& r) {
    std::array<uint32_t, 4> v{};
    for (size_t i = 0; i < 4; ++i) v[i] = is_feature_register(k.leaf, k.subleaf, kRegs[i]) ? 0 : r[kRegs[i]];
    return v;
  };
  return key(a) <= key(b) ? a : b;
}

Profile intersect(const Profile& a, const Profile& b) {
  Profile out;
  out.vendor = a.vendor;
  for (const auto& [k, ra] : a.leaves) {
    const Regs* rb = b.find(k.leaf, k.subleaf);
    if (!rb) continue;  // a leaf one host lacks is absent from the baseline
    Regs r = min_non_feature(k, ra, *rb);
    for (Reg reg : kRegs)
      if (is_feature_register(k.leaf, k.subleaf, reg)) r[reg] = ra[reg] & (*rb)[reg];
    if (is_max_leaf(k.leaf)) r.eax = std::min(ra.eax, rb->eax);
    if (k.leaf == kLeafAddrSizes) {
      r.eax = (r.eax & ~(kPhysBitsMask | kLinearBitsMask)) |
              std::min(ra.eax & kPhysBitsMask, rb->eax & kPhysBitsMask) |
              std::min(ra.eax & kLinearBitsMask, rb->eax & kLinearBitsMask);
    }
    out.leaves[k] = r;
  }
  // Drop what lies beyond the (new, lower) maximum leaves.
  const uint32_t max_basic = out.max_basic(), max_ext = out.max_extended();
  for (auto it = out.leaves.begin(); it != out.leaves.end();) {
    uint32_t l = it->first.leaf;
    bool beyond = l < kLeafHvBase ? l > max_basic : (l >= kLeafExtBase && l > max_ext);
    it = beyond ? out.leaves.erase(it) : std::next(it);
  }
  return out;
}

}  // namespace

Result<Profile> baseline(std::span<const Profile> profiles) {
  if (profiles.empty()) return Status::invalid("baseline needs at least one profile");
  for (const Profile& p : profiles)
    if (p.vendor != profiles[0].vendor)
      return Status::invalid("cannot baseline " + profiles[0].vendor + " with " + p.vendor +
                             " hosts: there is no compatibility across vendors");
  Profile acc = profiles[0];
  for (size_t i = 1; i < profiles.size(); ++i) acc = intersect(acc, profiles[i]);
  return acc;
}

Comparison compare(const Profile& guest, const Profile& host) {
  Comparison c;
  c.guest_vendor = guest.vendor;
  c.host_vendor = host.vendor;
  c.vendor_mismatch = guest.vendor != host.vendor;
  c.guest_phys_bits = guest.phys_bits();
  c.host_phys_bits = host.phys_bits();
  for (const Feature& f : all_features()) {
    if (is_normalised(f.name)) continue;  // set by the VMM on every host (hypervisor, ht, ...)
    if (has(guest, f) && !has(host, f)) c.missing.emplace_back(f.name);
  }
  return c;
}

std::string Comparison::describe() const {
  if (compatible()) return "compatible";
  std::string s = "not compatible";
  if (vendor_mismatch)
    s += ": vendor mismatch (guest " + guest_vendor + ", host " + host_vendor + "): no compatibility across vendors";
  if (!missing.empty()) {
    s += vendor_mismatch ? "; " : ": ";
    s += "the host lacks " + std::to_string(missing.size()) + " feature" + (missing.size() == 1 ? "" : "s") +
         " the guest sees:";
    for (const std::string& m : missing) s += " " + m;
  }
  if (guest_phys_bits > host_phys_bits)
    s += (vendor_mismatch || !missing.empty() ? "; " : ": ") + std::string("guest physical address bits ") +
         std::to_string(guest_phys_bits) + " > host " + std::to_string(host_phys_bits);
  return s;
}

}  // namespace minihv::cpuid
