#include "cluster/config.h"

#include "common/ether.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <thread>

#include "cluster/timings.h"
#include "common/ether.h"
#include "common/units.h"

namespace minihv::cluster {

namespace {

template <typename Vec>
auto find_by_name(Vec& v, const std::string& name) -> decltype(&v[0]) {
  auto it = std::find_if(v.begin(), v.end(), [&](const auto& x) { return x.name == name; });
  return it == v.end() ? nullptr : &*it;
}

nlohmann::json node_json(const NodeSpec& n) {
  return {{"name", n.name},
          {"host_id", n.host_id},
          {"listen", n.listen},
          {"migration_networks", n.migration_networks},
          {"joined_unix_ms", n.joined_unix_ms},
          {"paused", n.paused},
          {"cpu_profile", n.cpu_profile}};
}

nlohmann::json vm_json(const VmSpec& v) {
  nlohmann::json j = {{"name", v.name},       {"index", v.index},         {"kernel", v.kernel},
          {"initrd", v.initrd},   {"cmdline", v.cmdline},     {"mem_bytes", v.mem_bytes},
          {"cpus", v.cpus},       {"cpu_model", v.cpu_model}, {"disk", v.disk},
          {"preferred_owners", v.preferred_owners},           {"ha", v.ha},
          {"running", v.running}, {"generation", v.generation}};
  j["nics"] = nlohmann::json::array();
  for (const VmNic& n : v.nics) j["nics"].push_back({{"bridge", n.bridge}, {"mac", n.mac}});
  if (const auto& f = v.last_failure)
    j["last_failure"] = {{"reason", f->reason}, {"node", f->node}, {"unix_ms", f->unix_ms}, {"generation", f->generation}};
  return j;
}

std::optional<VmFailure> failure_from_json(const nlohmann::json& v) {
  if (!v.contains("last_failure")) return std::nullopt;
  const auto& f = v.at("last_failure");
  return VmFailure{f.value("reason", ""), f.value("node", ""), f.value("unix_ms", int64_t{0}),
                   f.value("generation", int64_t{0})};
}

}  // namespace

const NodeSpec* ClusterConfig::node(const std::string& name) const { return find_by_name(nodes, name); }
NodeSpec* ClusterConfig::node(const std::string& name) { return find_by_name(nodes, name); }
const VmSpec* ClusterConfig::vm(const std::string& name) const { return find_by_name(vms, name); }
VmSpec* ClusterConfig::vm(const std::string& name) { return find_by_name(vms, name); }

VmSpec vm_spec_from_json(const nlohmann::json& v) {
  VmSpec s;
  s.kernel = v.value("kernel", "");
  s.initrd = v.value("initrd", "");
  s.cmdline = v.value("cmdline", "");
  s.mem_bytes = v.value("mem_bytes", s.mem_bytes);
  s.cpus = v.value("cpus", 1u);
  s.cpu_model = v.value("cpu_model", "baseline");
  s.disk = v.value("disk", "");
  for (const auto& n : v.value("nics", nlohmann::json::array()))
    s.nics.push_back({n.at("bridge").get<std::string>(), n.value("mac", "")});
  s.preferred_owners = v.value("preferred_owners", std::vector<std::string>{});
  s.ha = v.value("ha", true);
  return s;
}

nlohmann::json to_json(const VmSpec& v) { return vm_json(v); }

nlohmann::json to_json(const ClusterConfig& c) {
  nlohmann::json j = {{"format", "minihv-cluster/1"},
                      {"max_migrations_per_node", c.max_migrations_per_node},
                      {"migration_streams", c.migration_streams},
                      {"nodes", nlohmann::json::array()},
                      {"vms", nlohmann::json::array()}};
  for (const auto& n : c.nodes) j["nodes"].push_back(node_json(n));
  for (const auto& v : c.vms) j["vms"].push_back(vm_json(v));
  return j;
}

Status check_nics(const VmSpec& v) {
  if (v.nics.size() > kMaxVmNics) return Status::invalid("at most " + std::to_string(kMaxVmNics) + " NICs");
  for (const VmNic& n : v.nics) {
    if (!valid_interface_name(n.bridge)) return Status::invalid("bridge=" + n.bridge + ": not an interface name");
    if (!n.mac.empty()) MINIHV_TRY(parse_mac(n.mac).status());
  }
  return Status::ok();
}

Result<ClusterConfig> config_from_json(const nlohmann::json& j) {
  ClusterConfig c;
  if (j.is_object() && j.empty()) return c;  // a volume nobody has configured yet
  try {
    if (j.value("format", "") != "minihv-cluster/1")
      return Status::invalid("the volume's cluster configuration has format '" + j.value("format", "?") +
                             "', this minihv reads minihv-cluster/1");
    c.max_migrations_per_node = j.value("max_migrations_per_node", 1u);
    c.migration_streams = j.value("migration_streams", 2u);
    std::set<uint32_t> ids, indexes;
    for (const auto& n : j.at("nodes")) {
      NodeSpec s;
      s.name = n.at("name").get<std::string>();
      s.host_id = n.at("host_id").get<uint32_t>();
      s.listen = n.value("listen", "");
      s.migration_networks = n.value("migration_networks", std::vector<std::string>{});
      s.joined_unix_ms = n.value("joined_unix_ms", int64_t{0});
      s.paused = n.value("paused", false);
      s.cpu_profile = n.value("cpu_profile", nlohmann::json());
      MINIHV_TRY(blockdev::validate_name("cluster configuration: node name", s.name));
      if (c.node(s.name)) return Status::invalid("cluster configuration: two nodes named " + s.name);
      if (s.host_id < 1 || s.host_id > blockdev::kNodeSlots || !ids.insert(s.host_id).second)
        return Status::invalid("cluster configuration: node " + s.name + " has a bad or duplicate host id");
      c.nodes.push_back(std::move(s));
    }
    for (const auto& v : j.at("vms")) {
      VmSpec s = vm_spec_from_json(v);
      s.name = v.at("name").get<std::string>();
      s.index = v.at("index").get<uint32_t>();
      s.running = v.value("running", false);
      s.generation = v.value("generation", int64_t{0});
      s.last_failure = failure_from_json(v);
      MINIHV_TRY(blockdev::validate_name("cluster configuration: VM name", s.name));
      if (c.vm(s.name)) return Status::invalid("cluster configuration: two VMs named " + s.name);
      if (s.index >= kMaxVms || !indexes.insert(s.index).second)
        return Status::invalid("cluster configuration: VM " + s.name + " has a bad or duplicate index");
      MINIHV_TRY(check_nics(s).context("cluster configuration: VM " + s.name));
      c.vms.push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid(std::string("the volume's cluster configuration is malformed: ") + e.what());
  }
  return c;
}

Result<ClusterConfig> read_config(blockdev::Volume& vol) {
  auto raw = vol.read_config();
  if (!raw) return raw.status();
  return config_from_json(raw->doc);
}

Status update_config(blockdev::Volume& vol, const std::string& owner,
                     const std::function<Status(ClusterConfig&)>& edit) {
  blockdev::AcquireOptions o;
  o.wait_for_live_holder = true;
  o.max_wait = timings::kAdminLeaseWait;
  // Several writers at once (nodes joining together): the losers of a race try again.
  const auto deadline = std::chrono::steady_clock::now() + o.max_wait;
  auto admin = vol.acquire(vol.admin_slot(), owner, o);
  while (!admin && admin.status().is_invalid_input() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(timings::kAdminRetryBase + std::chrono::milliseconds(std::rand() % timings::kAdminRetryJitterMs));
    admin = vol.acquire(vol.admin_slot(), owner, o);
  }
  if (!admin) return admin.status().context("taking the volume's admin lease");
  auto cfg = read_config(vol);
  if (!cfg) return cfg.status();
  MINIHV_TRY(edit(*cfg));
  MINIHV_TRY(vol.write_config(to_json(*cfg), **admin));
  return (*admin)->release();
}

}  // namespace minihv::cluster
