// The cpu check: one vendor everywhere, the cluster's baseline profile, and whether each VM's
// CPU model can start on every node and move between any two.
#include <algorithm>
#include <map>
#include <set>

#include "cluster/validate_checks.h"
#include "common/json_text.h"
#include "cpuid/cpuid.h"

namespace minihv::cluster::detail {

namespace {

struct Host {
  const NodeResult* node;
  cpuid::Profile profile;
  std::string model_name;
  std::vector<std::string> features;
};

nlohmann::json summarize(const cpuid::Profile& base, const std::vector<const Host*>& hosts) {
  const auto base_features = cpuid::enabled_features(base);
  nlohmann::json j = {{"vendor", base.vendor}, {"features", base_features.size()}, {"phys_bits", base.phys_bits()},
                      {"feature_names", base_features}, {"nodes", nlohmann::json::array()},
                      {"per_node", nlohmann::json::array()}};
  const Host* weakest = hosts.front();
  for (const Host* h : hosts) {
    j["nodes"].push_back(h->node->name);
    j["per_node"].push_back({{"node", h->node->name}, {"model_name", h->model_name}, {"features", h->features.size()},
                             {"above_baseline", h->features.size() - base_features.size()},
                             {"phys_bits", h->profile.phys_bits()}});
    if (h->features.size() < weakest->features.size()) weakest = h;
  }
  // What the cluster gives up for its weakest node: features another node has and it lacks.
  std::set<std::string> lacks;
  for (const Host* h : hosts)
    for (const std::string& f : h->features)
      if (!std::binary_search(weakest->features.begin(), weakest->features.end(), f)) lacks.insert(f);
  j["weakest_node"] = weakest->node->name;
  j["weakest_lacks"] = lacks;
  j["profile"] = cpuid::to_json(base, "baseline of " + json_text(j["nodes"]));
  return j;
}

// Can a VM with this model start on every node, and move from any node to any other?
void check_model(const VmSpec& vm, const std::vector<const Host*>& hosts, Check& c) {
  const std::string what = "VM " + vm.name + " (CPU model " + vm.cpu_model + ")";
  if (vm.cpu_model.ends_with(".json")) {
    c.warn(what + " uses a profile file validate cannot read; run `minihv cpuid compare " + vm.cpu_model +
           "` on each node");
    return;
  }
  if (auto spec = cpuid::builtin_model(vm.cpu_model, hosts.front()->profile.vendor); !spec) {
    c.warn(what + " cannot be evaluated: " + spec.message());
    return;
  }
  for (const Host* from : hosts) {
    auto g = cpuid::build_for_vm(vm.cpu_model, cpuid::HostCpu{from->profile, from->profile, {}},
                                 cpuid::BuildOptions{vm.cpus, false});
    if (!g) {
      c.fail(what + " cannot start on " + label(*from->node) + ": " + g.message());
      continue;
    }
    for (const Host* to : hosts) {
      if (to == from) continue;
      const cpuid::Comparison cmp = cpuid::compare(g->effective, to->profile);
      if (!cmp.compatible())
        c.fail(what + " started on node " + from->node->name + " could not move to node " + to->node->name + ": " +
               cmp.describe());
    }
  }
}

}  // namespace

void check_cpu(Run& r, Check& c) {
  std::vector<Host> hosts;
  for (const NodeResult* n : r.up) {
    const auto& cpu = field(*n->probe, "cpu");
    if (field(cpu, "profile").is_null()) {
      c.warn(label(*n) + " reported no CPU profile: " + str(cpu, "error"));
      continue;
    }
    auto p = cpuid::profile_from_json(field(cpu, "profile"), "node " + n->name + "'s CPU profile");
    if (!p) {
      c.fail(p.message());
      continue;
    }
    auto features = cpuid::enabled_features(*p);
    std::sort(features.begin(), features.end());
    hosts.push_back(Host{n, std::move(*p), str(cpu, "model_name"), std::move(features)});
  }
  if (hosts.empty()) return c.warn("not checked: no node reported a CPU profile");

  // The vendor most nodes have (the first node's on a tie); the others are the odd ones out.
  std::map<std::string, size_t> votes;
  for (const Host& h : hosts) ++votes[h.profile.vendor];
  std::string vendor = hosts.front().profile.vendor;
  for (const auto& [v, n] : votes)
    if (n > votes[vendor]) vendor = v;
  std::vector<const Host*> same;
  std::vector<std::string> same_names;
  for (const Host& h : hosts)
    if (h.profile.vendor == vendor) {
      same.push_back(&h);
      same_names.push_back("node " + h.node->name);
    }
  for (const Host& h : hosts)
    if (h.profile.vendor != vendor)
      c.fail(label(*h.node) + " is " + h.profile.vendor + " (" + h.model_name + "), unlike " +
             join(same_names) + " (" + vendor + "): VMs cannot move between vendors");

  std::vector<cpuid::Profile> profiles;
  for (const Host* h : same) profiles.push_back(h->profile);
  auto base = cpuid::baseline(profiles);  // one vendor: cannot fail
  if (!base) return c.fail(base.message());
  r.baseline = summarize(*base, same);

  for (const Host& h : hosts)
    c.detail(h.node->name + ": " + h.profile.vendor + " " + h.model_name + ", " +
             std::to_string(h.features.size()) + " features");
  bool identical = true;
  for (const Host* h : same) identical = identical && h->features == same.front()->features;
  for (const VmSpec& vm : r.in.config.vms) {
    if (vm.cpu_model == "baseline") continue;
    if (vm.cpu_model == "host") {
      if (!identical)
        c.warn("VM " + vm.name + " (CPU model host) sees all of its node's features, and the nodes differ: "
               "it can move only between nodes with the same processor features");
      continue;
    }
    check_model(vm, same, c);
  }
  c.on_pass("one vendor (" + vendor + ") " + on_all(hosts.size()) + "; the cluster's baseline has " +
            std::to_string(r.baseline["features"].get<size_t>()) + " features");
}

}  // namespace minihv::cluster::detail
