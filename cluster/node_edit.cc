// Configuration edits a node makes on request (vm add/set/rm/start/stop, node rm, resume), and the
// checks that come first: a refused edit writes nothing, and nothing live loses what it depends on.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "cluster/node_local.h"
#include "cluster/probe.h"
#include "cluster/rpc.h"
#include "cluster/timings.h"
#include "common/ether.h"
#include "common/fd.h"
#include "common/units.h"
#include "cpuid/guest_cpuid.h"
#include "cpuid/host.h"

namespace minihv::cluster {

namespace {

constexpr uint64_t kMinVmMemBytes = 16ull << 20;
constexpr unsigned kMaxVmCpus = 64;
using timings::kCheckTimeout;
// A node that has just taken its lease answers "still joining" until it serves; a check that
// meets that (or any failure that is not a verdict on the VM) asks again for this long.
using timings::kCheckSettle;
using timings::kCheckRetryPause;

nlohmann::json invalid(const std::string& msg) { return error_reply(Status::invalid(msg)); }

Status check_readable(const std::string& what, const std::string& path) {
  if (path.empty()) return Status::invalid(what + " is empty");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return Status::invalid(what + " '" + path + "' cannot be read: " + std::strerror(errno) +
                           " (every node must see it at the same path)");
  return Status::ok();
}

// What the configuration alone can tell: the name, sizes, the disk, the preferred owners.
Status check_vm_spec(blockdev::Volume& vol, const VmSpec& v, const ClusterConfig& c) {
  MINIHV_TRY(blockdev::validate_name("VM name", v.name));
  if (v.mem_bytes < kMinVmMemBytes) return Status::invalid("memory must be at least " + format_size(kMinVmMemBytes));
  if (v.cpus < 1 || v.cpus > kMaxVmCpus) return Status::invalid("cpus must be 1.." + std::to_string(kMaxVmCpus));
  if (!v.disk.empty()) {
    auto d = vol.find_disk(v.disk);
    if (!d) return Status::invalid("disk '" + v.disk + "': " + d.message() + " (minihv volume disk create)");
    for (const auto& other : c.vms)
      if (other.name != v.name && other.disk == v.disk)
        return Status::invalid("disk '" + v.disk + "' already belongs to VM " + other.name);
  }
  for (const auto& p : v.preferred_owners)
    if (!c.node(p)) return Status::invalid("preferred owner '" + p + "' is not a node of this cluster");
  MINIHV_TRY(check_nics(v));
  for (const VmNic& n : v.nics)
    for (const auto& other : c.vms)
      for (const VmNic& o : other.nics)
        if (other.name != v.name && !n.mac.empty() && o.mac == n.mac)
          return Status::invalid("mac " + n.mac + " already belongs to VM " + other.name);
  return Status::ok();
}

// Every NIC's bridge exists here: a VM that cannot be put on its network is refused before it starts.
Status check_bridges_here(const VmSpec& v, const std::string& node) {
  for (const VmNic& n : v.nics)
    if (!bridge_exists(n.bridge))
      return Status::invalid("node " + node + " has no bridge " + n.bridge + " (every node needs each VM NIC's bridge)");
  return Status::ok();
}

// What `run` would check on this host: the kernel and initrd lie under an image directory (checked
// before anything opens them) and can be read, the memory fits in the host's RAM, the CPU model
// resolves here ("baseline" is the nodes' common profile: always).
Status check_vm_here(const VmSpec& v, const std::string& node, const ImageDirs& images) {
  MINIHV_TRY(check_boot_files(v, node, images));
  MINIHV_TRY(check_bridges_here(v, node));
  MINIHV_TRY(check_readable("kernel", v.kernel));
  if (!v.initrd.empty()) MINIHV_TRY(check_readable("initrd", v.initrd));
  const uint64_t total = meminfo().first;
  if (total != 0 && v.mem_bytes > total)
    return Status::invalid("memory " + format_size(v.mem_bytes) + " does not fit on node " + node + " (" +
                           format_size(total) + " of RAM in all)");
  if (v.cpu_model == "baseline") return Status::ok();
  auto host = cpuid::read_host_cpu();
  if (!host) return host.status().context("node " + node + ": reading its CPU");
  auto built = cpuid::build_for_vm(v.cpu_model, *host, {v.cpus, false});
  if (!built) return Status::invalid("--cpu-model " + v.cpu_model + " on node " + node + ": " + built.message());
  return Status::ok();
}

}  // namespace

Status Node::refresh_config() {
  auto cfg = read_config(*vol_);
  if (!cfg) return cfg.status();
  std::lock_guard lock(mu_);
  config_ = std::move(*cfg);
  return Status::ok();
}

nlohmann::json Node::check_vm_reply(const nlohmann::json& req) {
  Status s = check_vm_here(vm_spec_from_json(req.at("spec")), o_.name, images_);
  return s ? nlohmann::json{{"ok", true}} : error_reply(s);
}

Status Node::check_vm_everywhere(const VmSpec& vm) {
  std::vector<std::pair<std::string, std::string>> peers;  // name, address
  {
    std::lock_guard lock(mu_);
    for (const auto& n : live_nodes(true))
      if (n != o_.name) peers.push_back({n, config_.node(n)->listen});
  }
  MINIHV_TRY(check_vm_here(vm, o_.name, images_));
  for (const auto& [name, addr] : peers) MINIHV_TRY(check_vm_on_peer(vm, name, addr));
  return Status::ok();
}

Status Node::check_vm_on_peer(const VmSpec& vm, const std::string& name, const std::string& addr) {
  const auto deadline = std::chrono::steady_clock::now() + kCheckSettle;
  for (;;) {
    auto r = node_call(rpc_key_, addr, {{"cmd", "check_vm"}, {"spec", to_json(vm)}}, kCheckTimeout);
    if (r || r.status().is_invalid_input()) return r.status();
    if (std::chrono::steady_clock::now() >= deadline)
      return r.status().context("checking VM " + vm.name + " on node " + name);
    std::this_thread::sleep_for(kCheckRetryPause);
  }
}

nlohmann::json Node::add_vm(const nlohmann::json& req) {
  const std::string name = req.value("vm", "");
  if (Status s = refresh_config(); !s) return error_reply(s);
  const auto& j = req.at("spec");
  VmSpec v = vm_spec_from_json(j);
  v.name = name;
  v.running = j.value("start", false);
  for (VmNic& n : v.nics)
    if (n.mac.empty()) n.mac = format_mac(random_mac());  // fixed from now on: failover keeps it
  {
    std::lock_guard lock(mu_);
    if (Status s = check_vm_spec(*vol_, v, config_); !s) return error_reply(s);
  }
  if (Status s = check_vm_everywhere(v); !s) return error_reply(s);
  Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    if (c.vm(name)) return Status::invalid("the cluster already has a VM named '" + name + "'");
    if (c.vms.size() >= kMaxVms) return Status::invalid("the cluster already has " + std::to_string(kMaxVms) + " VMs");
    while (std::any_of(c.vms.begin(), c.vms.end(), [&](const VmSpec& x) { return x.index == v.index; })) ++v.index;
    MINIHV_TRY(check_vm_spec(*vol_, v, c));
    c.vms.push_back(v);
    return Status::ok();
  });
  if (!s) return error_reply(s);
  (void)refresh_config();
  return {{"ok", true}, {"generation", v.generation}};
}

// Memory, vCPUs, CPU model, preferred owners of a VM that runs nowhere.
nlohmann::json Node::set_vm(const nlohmann::json& req) {
  const std::string name = req.value("vm", "");
  if (Status s = refresh_config(); !s) return error_reply(s);
  const nlohmann::json& set = req.at("set");
  VmSpec v;
  {
    std::lock_guard lock(mu_);
    const VmSpec* cur = config_.vm(name);
    if (!cur) return invalid("no VM named '" + name + "' (minihv cluster status lists them)");
    if (const std::string h = holder_of(*cur); !h.empty())
      return error_reply(Status::error("VM " + name + " runs on node " + h + "; stop it first (minihv cluster vm stop " + name + ")"));
    v = *cur;
  }
  if (set.contains("mem_bytes")) v.mem_bytes = set["mem_bytes"].get<uint64_t>();
  if (set.contains("cpus")) v.cpus = set["cpus"].get<unsigned>();
  if (set.contains("cpu_model")) v.cpu_model = set["cpu_model"].get<std::string>();
  if (set.contains("preferred_owners")) v.preferred_owners = set["preferred_owners"].get<std::vector<std::string>>();
  {
    std::lock_guard lock(mu_);
    if (Status s = check_vm_spec(*vol_, v, config_); !s) return error_reply(s);
  }
  if (Status s = check_vm_everywhere(v); !s) return error_reply(s);
  Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    VmSpec* cur = c.vm(name);
    if (!cur) return Status::invalid("no VM named '" + name + "'");
    if (cur->running) return Status::error("VM " + name + " was started meanwhile; stop it first");
    cur->mem_bytes = v.mem_bytes;
    cur->cpus = v.cpus;
    cur->cpu_model = v.cpu_model;
    cur->preferred_owners = v.preferred_owners;
    return check_vm_spec(*vol_, *cur, c);
  });
  if (!s) return error_reply(s);
  (void)refresh_config();
  return {{"ok", true}};
}

nlohmann::json Node::remove_vm(const nlohmann::json& req) {
  const std::string name = req.value("vm", "");
  if (Status s = refresh_config(); !s) return error_reply(s);
  {
    std::lock_guard lock(mu_);
    const VmSpec* cur = config_.vm(name);
    if (!cur) return invalid("no VM named '" + name + "' (minihv cluster status lists them)");
    if (const std::string h = holder_of(*cur); !h.empty())
      return error_reply(Status::error("VM " + name + " runs on node " + h + "; stop it first (minihv cluster vm stop " + name + ")"));
  }
  Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    const VmSpec* cur = c.vm(name);
    if (!cur) return Status::invalid("no VM named '" + name + "'");
    if (cur->running) return Status::error("VM " + name + " is started (it is starting somewhere); stop it first");
    std::erase_if(c.vms, [&](const VmSpec& v) { return v.name == name; });
    return Status::ok();
  });
  if (!s) return error_reply(s);
  (void)refresh_config();
  return {{"ok", true}};
}

// A node that is gone (its node lease dead or released) and holds no VM's lease leaves the
// configuration; its name comes off every VM's preferred owners.
nlohmann::json Node::remove_node(const nlohmann::json& req) {
  const std::string name = req.value("node", "");
  if (Status s = refresh_config(); !s) return error_reply(s);
  {
    std::lock_guard lock(mu_);
    if (!config_.node(name)) return invalid("no node named '" + name + "'");
    auto it = node_state_.find(name);
    const Liveness l = it == node_state_.end() ? Liveness::kUnknown : it->second;
    if (name == o_.name || l == Liveness::kAlive)
      return error_reply(Status::error("node " + name + " is alive (it renews its node lease); stop it first"));
    if (l == Liveness::kUnknown)
      return error_reply(Status::error("node " + name + "'s lease has not been watched long enough yet; try again"));
    for (const auto& [vm, holder] : vm_holder_)
      if (holder == name)
        return error_reply(Status::error("node " + name + " still holds VM " + vm + "'s lease; wait until it is taken over"));
  }
  Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    if (!c.node(name)) return Status::invalid("no node named '" + name + "'");
    std::erase_if(c.nodes, [&](const NodeSpec& n) { return n.name == name; });
    for (auto& v : c.vms) std::erase(v.preferred_owners, name);
    return Status::ok();
  });
  if (!s) return error_reply(s);
  (void)refresh_config();
  return {{"ok", true}};
}

nlohmann::json Node::edit_vm(const nlohmann::json& req) {
  const std::string cmd = req.at("cmd");
  const std::string name = req.value("vm", req.value("node", ""));
  int64_t generation = 0;
  Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    if (cmd == "node_resume") {
      NodeSpec* n = c.node(name);
      if (!n) return Status::invalid("no node named '" + name + "'");
      n->paused = false;
      return Status::ok();
    }
    VmSpec* existing = c.vm(name);
    if (!existing) return Status::invalid("no VM named '" + name + "' (minihv cluster status lists them)");
    if (cmd == "vm_start") {
      if (!existing->running) existing->generation++;
      existing->running = true;
    } else {
      existing->running = false;
    }
    generation = existing->generation;
    return Status::ok();
  });
  if (!s) return error_reply(s);
  (void)refresh_config();
  std::lock_guard lock(mu_);
  vm_errors_.erase(name);
  return {{"ok", true}, {"generation", generation}};
}

}  // namespace minihv::cluster
