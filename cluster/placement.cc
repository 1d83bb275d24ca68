#include "cluster/placement.h"

#include <algorithm>
#include <tuple>

namespace minihv::cluster {

std::optional<std::string> choose_node(const VmSpec& vm, const std::vector<NodeLoad>& candidates) {
  for (const auto& preferred : vm.preferred_owners)
    for (const auto& c : candidates)
      if (c.name == preferred) return c.name;
  auto best = std::min_element(candidates.begin(), candidates.end(), [](const NodeLoad& a, const NodeLoad& b) {
    return std::tie(a.vms, a.mem_bytes, a.host_id) < std::tie(b.vms, b.mem_bytes, b.host_id);
  });
  if (best == candidates.end()) return std::nullopt;
  return best->name;
}

std::vector<std::optional<std::string>> place_all(const std::vector<const VmSpec*>& vms,
                                                  std::vector<NodeLoad> candidates) {
  std::vector<std::optional<std::string>> out;
  for (const VmSpec* vm : vms) {
    auto node = choose_node(*vm, candidates);
    if (node)
      for (auto& c : candidates)
        if (c.name == *node) {
          c.vms += 1;
          c.mem_bytes += vm->mem_bytes;
        }
    out.push_back(std::move(node));
  }
  return out;
}

}  // namespace minihv::cluster
