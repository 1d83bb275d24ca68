#include "cluster/validate.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>

#include "cluster/probe.h"
#include "cluster/validate_checks.h"
#include "common/json_text.h"
#include "common/units.h"

namespace minihv::cluster {

namespace detail {

nlohmann::json Check::to_json() const {
  Level worst = Level::kPass;
  for (const auto& [level, text] : issues_) worst = std::max(worst, level);
  std::vector<std::string> top;
  nlohmann::json details = nlohmann::json::array();
  for (const auto& [level, text] : issues_) {
    if (level == worst) top.push_back(text);
    else details.push_back("warning: " + text);
  }
  for (const std::string& d : details_) details.push_back(d);
  if (!note_.empty()) details.push_back(note_);
  std::string message = worst == Level::kPass ? pass_ : join(top, "; ");
  if (worst != Level::kPass && !note_.empty()) message += ". " + note_;
  static const char* const kResult[] = {"pass", "warn", "fail"};
  return {{"id", id_}, {"title", title_}, {"result", kResult[static_cast<int>(worst)]},
          {"message", message}, {"details", details}};
}

const nlohmann::json& field(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}
std::string str(const nlohmann::json& j, const char* key) {
  const auto& v = field(j, key);
  return v.is_string() ? v.get<std::string>() : "";
}
int64_t i64(const nlohmann::json& j, const char* key) {
  const auto& v = field(j, key);
  return v.is_number() ? v.get<int64_t>() : 0;
}
uint64_t u64(const nlohmann::json& j, const char* key) {
  const auto& v = field(j, key);
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  return v.is_number_integer() && v.get<int64_t>() > 0 ? static_cast<uint64_t>(v.get<int64_t>()) : 0;
}
bool flag(const nlohmann::json& j, const char* key) {
  const auto& v = field(j, key);
  return v.is_boolean() && v.get<bool>();
}

std::string label(const NodeResult& n) { return "node " + n.name + " (" + n.address + ")"; }

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string s;
  for (const std::string& i : items) s += (s.empty() ? "" : sep) + i;
  return s;
}

std::string on_all(size_t nodes) {
  return nodes == 1 ? "on the one node" : "on all " + std::to_string(nodes) + " nodes";
}

std::string fmt_us(int64_t us) {
  if (us < 1000) return std::to_string(us) + " us";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f ms", static_cast<double>(us) / 1000.0);
  return b;
}

}  // namespace detail

namespace {

using namespace detail;

std::string fmt_ms(int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f s", static_cast<double>(ms) / 1000.0);
  return b;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

std::string count(size_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); }

void check_contact(Run& r, Check& c) {
  if (r.in.nodes.empty()) c.fail("no nodes to validate: the configuration lists none");
  for (const NodeResult& n : r.in.nodes) {
    if (!n.probe) {
      c.fail(label(n) + " did not answer: " + (n.error.empty() ? "no reply" : n.error));
      continue;
    }
    const std::string said = str(*n.probe, "node");
    if (said != n.name) c.fail(label(n) + " answered as node \"" + said + "\": the address belongs to another node");
    c.detail(n.name + " (" + n.address + "): answered in " + fmt_ms(n.answered_unix_ms - n.asked_unix_ms));
  }
  c.on_pass("every node answered (" + count(r.in.nodes.size(), "node") + ")");
}

void check_kvm(Run& r, Check& c) {
  for (const NodeResult* n : r.up) {
    const auto& kvm = field(*n->probe, "kvm");
    if (!flag(kvm, "ok")) {
      c.fail(label(*n) + ": KVM is not usable: " + str(kvm, "error"));
      continue;
    }
    for (const KvmCap& cap : kvm_caps()) {
      if (flag(field(kvm, "caps"), std::string(cap.key).c_str())) continue;
      const std::string what = label(*n) + ": KVM lacks " + std::string(cap.key) + ", used for " + std::string(cap.why);
      cap.required ? c.fail(what) : c.warn(what);
    }
    const bool pvm = flag(kvm, "software_kvm_pvm");
    if (pvm) c.warn(label(*n) + " runs PVM, a software KVM: guests run slower and CPU models are only advisory there");
    else if (flag(kvm, "advisory")) c.warn(label(*n) + ": " + str(kvm, "advisory_reason"));
    c.detail(n->name + ": KVM API " + std::to_string(i64(kvm, "api_version")) + (pvm ? ", PVM (software KVM)" : ""));
  }
  c.on_pass("KVM offers every capability minihv uses " + on_all(r.up.size()));
}

void check_volume(Run& r, Check& c) {
  const std::string want = lower(r.in.volume_uuid);
  for (const NodeResult* n : r.up) {
    const auto& v = field(*n->probe, "volume");
    if (!str(v, "error").empty()) {
      c.fail(label(*n) + " has no volume open: " + str(v, "error"));
      continue;
    }
    if (lower(str(v, "uuid")) != want)
      c.fail(label(*n) + " uses volume " + str(v, "uuid") + " (" + str(v, "path") + ", cluster \"" + str(v, "cluster") +
             "\"), not this cluster's volume " + want + " (cluster \"" + r.in.cluster + "\")");
    c.detail(n->name + ": " + str(v, "path"));
  }
  c.on_pass("volume " + want + " (cluster \"" + r.in.cluster + "\") " + on_all(r.up.size()));
}

void check_lease_io(Run& r, Check& c) {
  const int64_t limit_us = r.in.timings.io_timeout.count() * 1000, slow_us = limit_us / 4;
  for (const NodeResult* n : r.up) {
    const auto& io = field(*n->probe, "lease_io");
    const int64_t reads = i64(io, "reads"), p50 = i64(io, "p50_us"), p99 = i64(io, "p99_us"), max = i64(io, "max_us");
    if (!str(io, "error").empty() || reads == 0) {
      const std::string why = str(io, "error").empty() ? "no read was timed" : str(io, "error");
      c.fail(label(*n) + " cannot read its lease: " + why);
      continue;
    }
    // A renewal is a read and a write, each allowed the I/O timeout: dead - fail >= 2 x io-timeout
    // is the margin that covers a write still in flight when its holder stops (docs/volume-format.md).
    const int64_t renewal = i64(io, "slowest_renewal_us");
    if (max > limit_us)
      c.fail(label(*n) + ": a lease read took " + fmt_us(max) + ", longer than the lease I/O timeout (" +
             fmt_us(limit_us) + "): its leases would lapse under load");
    else if (renewal > 2 * limit_us)
      c.fail(label(*n) + ": a lease renewal took " + fmt_us(renewal) + ", longer than the 2 x " + fmt_us(limit_us) +
             " I/O timeout the dead - fail margin allows: format the volume with a larger --io-timeout-ms");
    else if (p99 > slow_us)
      c.warn(label(*n) + ": lease reads are slow: p99 " + fmt_us(p99) + ", over a quarter of the lease I/O timeout (" +
             fmt_us(limit_us) + ")");
    c.detail(n->name + ": " + std::to_string(reads) + " reads, p50 " + fmt_us(p50) + ", p99 " + fmt_us(p99) + ", max " +
             fmt_us(max) + "; slowest renewal since the node started " + fmt_us(renewal));
  }
  c.on_pass("lease reads stay well within the " + fmt_us(limit_us) + " I/O timeout " + on_all(r.up.size()));
}

void check_migration_networks(Run& r, Check& c) {
  size_t paths = 0;
  for (const NodeResult& n : r.in.nodes) {
    for (const ReachResult& x : n.reach) {
      ++paths;
      if (!x.ok) c.fail("node " + x.from + " cannot reach node " + x.to + " on migration network " + x.network + ": " +
                     (x.error.empty() ? "no answer" : x.error));
      else c.detail(x.from + " -> " + x.to + " on " + x.network + ": " + fmt_us(static_cast<int64_t>(x.rtt_ms * 1000)));
    }
  }
  for (const NodeResult* n : r.up)
    if (field(*n->probe, "migration_networks").empty())
      c.warn(label(*n) + " has no migration network: live migrations cannot reach it");
  if (paths == 0 && r.up.size() > 1) c.warn("no migration network was tested between the nodes");
  c.on_pass("every node reaches the others' migration networks (" + count(paths, "path") + ")");
}

void check_clock(Run& r, Check& c) {
  int64_t worst = 0;
  for (const NodeResult* n : r.up) {
    if (n->asked_unix_ms == 0 || n->answered_unix_ms == 0) continue;
    const int64_t skew = i64(*n->probe, "clock_unix_ms") - (n->asked_unix_ms + n->answered_unix_ms) / 2;
    const int64_t error = (n->answered_unix_ms - n->asked_unix_ms + 1) / 2;
    const std::string side = skew > 0 ? " ahead of" : " behind";
    const std::string what = label(*n) + "'s clock is " + fmt_ms(std::abs(skew)) + side +
                             " the validating host's (+/- " + fmt_ms(error) + ")";
    if (std::abs(skew) > kClockFailMs) c.fail(what);
    else if (std::abs(skew) > kClockWarnMs) c.warn(what);
    c.detail(n->name + ": " + (skew >= 0 ? "+" : "-") + fmt_ms(std::abs(skew)) + " +/- " + fmt_ms(error));
    worst = std::max(worst, std::abs(skew));
  }
  c.note("Lease safety never uses wall clocks (each host times leases on its own monotonic clock); "
         "only reports and drill timings compare them");
  c.on_pass("clocks agree within " + fmt_ms(worst) + " (warn above " + fmt_ms(kClockWarnMs) + ")");
}

void check_memory(Run& r, Check& c) {
  const VmSpec* big = nullptr;
  for (const VmSpec& vm : r.in.config.vms)
    if (vm.ha && (!big || vm.mem_bytes > big->mem_bytes)) big = &vm;
  const NodeResult* busiest = nullptr;
  for (const NodeResult* n : r.up) {
    const uint64_t avail = u64(*n->probe, "mem_available_bytes"), vms = u64(*n->probe, "vms_mem_bytes");
    if (big && avail < big->mem_bytes + kVmMemHeadroomBytes)
      c.fail(label(*n) + " has " + format_size(avail) + " available, less than the largest HA VM (" + big->name + ", " +
             format_size(big->mem_bytes) + ") plus " + format_size(kVmMemHeadroomBytes));
    c.detail(n->name + ": " + format_size(avail) + " available of " + format_size(u64(*n->probe, "mem_total_bytes")) +
             ", " + format_size(vms) + " committed to VMs");
    if (!busiest || vms > u64(*busiest->probe, "vms_mem_bytes")) busiest = n;
  }
  // Could the others restart the busiest node's VMs if it died?
  const uint64_t load = busiest ? u64(*busiest->probe, "vms_mem_bytes") : 0;
  uint64_t room = 0;
  for (const NodeResult* n : r.up)
    if (n != busiest) room += u64(*n->probe, "mem_available_bytes") -
                              std::min(u64(*n->probe, "mem_available_bytes"), kVmMemHeadroomBytes);
  if (r.up.size() > 1 && load > room)
    c.warn("if " + label(*busiest) + " failed, the others could not restart all its VMs: they need " +
           format_size(load) + ", the other nodes have " + format_size(room) + " to spare");
  c.on_pass(big ? "every node has room for the largest HA VM (" + big->name + ", " + format_size(big->mem_bytes) +
                      ") and the others could restart any node's VMs"
                : "no HA VM is configured");
}

void check_config(Run& r, Check& c) {
  const ClusterConfig& cfg = r.in.config;
  std::map<uint32_t, std::string> host_ids;
  for (const NodeSpec& spec : cfg.nodes) {
    if (auto [it, fresh] = host_ids.emplace(spec.host_id, spec.name); !fresh)
      c.fail("nodes " + it->second + " and " + spec.name + " both have host id " + std::to_string(spec.host_id) +
             ": their node leases collide");
    auto n = std::find_if(r.in.nodes.begin(), r.in.nodes.end(),
                          [&](const NodeResult& x) { return x.name == spec.name; });
    if (n == r.in.nodes.end()) c.warn("node " + spec.name + " is configured but was not validated");
    else if (n->probe && i64(*n->probe, "host_id") != spec.host_id)
      c.warn(label(*n) + " runs with host id " + std::to_string(i64(*n->probe, "host_id")) +
             ", but the configuration says " + std::to_string(spec.host_id));
  }
  // The volume's disk list, as the first node on the right volume saw it.
  const nlohmann::json* disks = nullptr;
  for (const NodeResult* n : r.up) {
    const auto& v = field(*n->probe, "volume");
    if (!disks && field(v, "disks").is_array() && lower(str(v, "uuid")) == lower(r.in.volume_uuid))
      disks = &field(v, "disks");
  }
  std::map<std::string, std::string> disk_user;
  for (const VmSpec& vm : cfg.vms) {
    for (const std::string& o : vm.preferred_owners)
      if (!cfg.node(o)) c.warn("VM " + vm.name + " prefers node " + o + ", which is not a node of this cluster");
    if (vm.disk.empty()) continue;
    if (disks && std::find(disks->begin(), disks->end(), vm.disk) == disks->end())
      c.warn("VM " + vm.name + "'s disk " + vm.disk + " is not on the volume");
    if (auto [it, fresh] = disk_user.emplace(vm.disk, vm.name); !fresh)
      c.warn("VMs " + it->second + " and " + vm.name + " both use disk " + vm.disk + ": only one can run at a time");
  }
  c.on_pass(count(cfg.nodes.size(), "node") + " and " + count(cfg.vms.size(), "VM") + " configured consistently");
}

// Every bridge a VM's NIC joins exists on every node that answered (a VM can run anywhere).
void check_vm_networks(Run& r, Check& c) {
  std::set<std::string> wanted;
  for (const VmSpec& vm : r.in.config.vms)
    for (const VmNic& n : vm.nics) wanted.insert(n.bridge);
  for (const NodeResult* n : r.up) {
    const auto& have = field(*n->probe, "bridges");
    for (const std::string& br : wanted)
      if (!have.is_array() || std::find(have.begin(), have.end(), br) == have.end())
        c.fail(label(*n) + " has no bridge " + br + ": a VM whose NIC joins it cannot run there");
  }
  c.note("each VM NIC's tap joins its bridge on whichever node runs the VM (minihv cluster vm add --net)");
  c.on_pass(wanted.empty() ? "no VM has a NIC" : "bridge " + join({wanted.begin(), wanted.end()}) + " " + on_all(r.up.size()));
}

// Whether each node can keep a VM to its own disk (a loop device over the disk's extent) and stop
// its writes in time (a watchdog: docs/security.md, "Writes after fencing").
void check_fencing(Run& r, Check& c) {
  const bool disks = std::any_of(r.in.config.vms.begin(), r.in.config.vms.end(),
                                 [](const VmSpec& vm) { return !vm.disk.empty(); });
  for (const NodeResult* n : r.up) {
    const auto& f = field(*n->probe, "fencing");
    if (!f.is_object()) {
      c.warn(label(*n) + " does not report its fencing (an older minihv)");
      continue;
    }
    if (!flag(f, "loop_devices")) {
      const std::string what = label(*n) + " cannot give a VM its volume disk: " + str(f, "loop_error");
      disks ? c.fail(what + ": a VM with a disk cannot run there") : c.warn(what);
    }
    const std::string dog = str(f, "watchdog");
    if (dog.empty())
      c.warn(label(*n) + " has no watchdog (node --watchdog DEV; modprobe softdog gives one): it cannot stop a "
                         "VM write stuck in the kernel, and after a fence only the lease's dead - fail margin covers it");
    c.detail(n->name + ": " + (dog.empty() ? "no watchdog" : "watchdog " + dog + ", " + std::to_string(i64(f, "watchdog_timeout_s")) + " s") +
             (flag(f, "loop_devices") ? "; loop devices" : "; no loop devices"));
  }
  c.on_pass("watchdogs armed and loop devices for VM disks " + on_all(r.up.size()));
}

struct CheckDef {
  const char* id;
  const char* title;
  void (*run)(Run&, Check&);
  bool needs_probes;
};

constexpr CheckDef kChecks[] = {
    {"contact", "Node contact", check_contact, false},
    {"kvm", "KVM", check_kvm, true},
    {"volume", "Shared volume", check_volume, true},
    {"cpu", "Processor compatibility", check_cpu, true},
    {"lease_io", "Lease I/O latency", check_lease_io, true},
    {"migration_networks", "Migration networks", check_migration_networks, true},
    {"clock", "Clock skew", check_clock, true},
    {"memory", "Memory", check_memory, true},
    {"vm_networks", "VM networks", check_vm_networks, true},
    {"fencing", "Fencing and VM disks", check_fencing, true},
    {"config", "Configuration", check_config, false},
};

// One row of the report's node table (for people; the checks hold the verdicts).
nlohmann::json node_row(const NodeResult& n) {
  nlohmann::json j = {{"name", n.name}, {"address", n.address}, {"answered", n.probe.has_value()}, {"error", n.error}};
  if (!n.probe) return j;
  const nlohmann::json& p = *n.probe;
  j["host_id"] = i64(p, "host_id");
  j["vendor"] = str(field(p, "cpu"), "vendor");
  j["model_name"] = str(field(p, "cpu"), "model_name");
  j["kvm"] = flag(field(p, "kvm"), "ok") ? (flag(field(p, "kvm"), "software_kvm_pvm") ? "PVM (software)" : "ok")
                                         : "unusable";
  j["mem_available_bytes"] = u64(p, "mem_available_bytes");
  j["mem_total_bytes"] = u64(p, "mem_total_bytes");
  j["vms_mem_bytes"] = u64(p, "vms_mem_bytes");
  j["lease_p99_us"] = i64(field(p, "lease_io"), "p99_us");
  if (n.asked_unix_ms && n.answered_unix_ms)
    j["clock_skew_ms"] = i64(p, "clock_unix_ms") - (n.asked_unix_ms + n.answered_unix_ms) / 2;
  return j;
}

}  // namespace

nlohmann::json validate(const ValidateInput& in) {
  Run run{in, {}, {{"error", "no node reported a CPU profile"}}};
  nlohmann::json names = nlohmann::json::array(), rows = nlohmann::json::array();
  for (const NodeResult& n : in.nodes) {
    names.push_back(n.name);
    rows.push_back(node_row(n));
    if (n.probe) run.up.push_back(&n);
  }
  nlohmann::json checks = nlohmann::json::array();
  bool ok = true;
  for (const CheckDef& def : kChecks) {
    Check c(def.id, def.title);
    if (def.needs_probes && run.up.empty()) c.warn("not checked: no node answered");
    else def.run(run, c);
    checks.push_back(c.to_json());
    ok = ok && checks.back()["result"] != "fail";
  }
  return {{"cluster", in.cluster}, {"volume_uuid", in.volume_uuid}, {"ok", ok},
          {"generated_unix_ms", in.generated_unix_ms}, {"nodes", names}, {"node_details", rows}, {"checks", checks},
          {"baseline", run.baseline}};
}

void read_probe_reply(NodeResult& r, const nlohmann::json& reply) {
  NodeResult got = r;
  try {
    if (!reply.is_object() || !reply.contains("probe") || !reply["probe"].is_object())
      throw std::invalid_argument("no probe in it");
    got.probe = reply["probe"];
    if (got.name.empty()) got.name = got.probe->value("node", got.address);
    for (const auto& x : reply.value("reach", nlohmann::json::array())) {
      if (x.value("to", "") == got.name) continue;
      got.reach.push_back({x.value("from", ""), x.value("to", ""), x.value("network", ""), x.value("ok", false),
                           x.value("rtt_ms", 0.0), x.value("error", "")});
    }
  } catch (const std::exception& e) {
    r.error = "node " + r.address + " sent a malformed probe reply (" + e.what() + "): " +
              json_text(reply).substr(0, 200);
    return;
  }
  r = std::move(got);
}

}  // namespace minihv::cluster
