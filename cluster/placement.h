// cluster/placement.h — where a VM that must start goes. Deterministic, so every survivor of a
// node failure computes the same answer from the same view and only one of them tries (the VM's
// lease would stop a second one anyway).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cluster/config.h"

namespace minihv::cluster {

struct NodeLoad {
  std::string name;
  uint32_t host_id = 0;
  unsigned vms = 0;          // VMs it runs (or has been assigned in this round)
  uint64_t mem_bytes = 0;    // their RAM
};

// Among `candidates` (live, not paused): the first of the VM's preferred owners that is a
// candidate; otherwise the one with the fewest VMs, then the least RAM committed, then the lowest
// host id. nullopt when there is no candidate.
std::optional<std::string> choose_node(const VmSpec& vm, const std::vector<NodeLoad>& candidates);

// Places `vms` (in order) one after another, adding each to its node's load so that a dead node's
// VMs spread over the survivors. Returns the node for each VM (or nullopt).
std::vector<std::optional<std::string>> place_all(const std::vector<const VmSpec*>& vms,
                                                  std::vector<NodeLoad> candidates);

}  // namespace minihv::cluster
