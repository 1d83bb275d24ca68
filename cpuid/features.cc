#include <algorithm>

#include "cpuid/features.h"
#include "cpuid/suggest.h"

namespace minihv::cpuid {

const Feature* find_feature(std::string_view name) {
  for (const Feature& f : all_features())
    if (f.name == name) return &f;
  return nullptr;
}

Result<const Feature*> lookup_feature(std::string_view name) {
  if (const Feature* f = find_feature(name)) return f;
  std::vector<std::string> names;
  for (const Feature& f : all_features()) names.emplace_back(f.name);
  std::string hint = did_you_mean(name, names);
  return Status::invalid("unknown CPU feature '" + std::string(name) + "'" + (hint.empty() ? "" : "; " + hint) +
                         " (`minihv cpuid models` lists them all)");
}

bool has(const Profile& p, const Feature& f) {
  const Regs* r = p.find(f.leaf, f.subleaf);
  return r && ((*r)[f.reg] & f.mask());
}

bool has(const Profile& p, std::string_view name) {
  const Feature* f = find_feature(name);
  return f && has(p, *f);
}

void set(Profile& p, const Feature& f, bool on) {
  if (!on) {
    if (Regs* r = p.find(f.leaf, f.subleaf)) (*r)[f.reg] &= ~f.mask();
    return;
  }
  p.at(f.leaf, f.subleaf)[f.reg] |= f.mask();
}

std::vector<std::string> enabled_features(const Profile& p) {
  std::vector<std::string> out;
  for (const Feature& f : all_features())
    if (has(p, f)) out.emplace_back(f.name);
  return out;
}

bool is_feature_register(uint32_t leaf, uint32_t subleaf, Reg reg) {
  auto regs = feature_registers();
  return std::find(regs.begin(), regs.end(), FeatureReg{leaf, subleaf, reg}) != regs.end();
}

}  // namespace minihv::cpuid
