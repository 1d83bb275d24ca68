// cluster/config.h — the cluster's state on the shared volume: nodes, VMs, migration settings.
//
// Stored as JSON in the volume's configuration area (blockdev/volume.h), written only under the
// admin lease (update_config). Who *runs* a VM is not configuration: it is whoever holds the VM's
// lease (VM lease slot kFirstVmSlot + index), so a dead node's claim dies with its lease.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "blockdev/volume.h"
#include "common/status.h"

namespace minihv::cluster {

constexpr uint32_t kFirstVmSlot = 256;  // VM lease slots below this guard disks
constexpr uint32_t kMaxVms = blockdev::kVmSlots - kFirstVmSlot;

struct NodeSpec {
  std::string name;
  uint32_t host_id = 0;                     // node lease slot 1..64
  std::string listen;                       // HOST:PORT of its control server
  std::vector<std::string> migration_networks;  // its addresses for migration traffic, preferred first
  int64_t joined_unix_ms = 0;
  bool paused = false;                      // drained: no VM is placed here until it rejoins
  nlohmann::json cpu_profile;               // what it offers a guest (cpuid profile JSON), for the baseline
};

// The last time a VM failed to start or ended with an error, kept in the configuration so that
// every node's status shows it (not only the node it failed on).
struct VmFailure {
  std::string reason;
  std::string node;
  int64_t unix_ms = 0;
  int64_t generation = 0;  // the VmSpec::generation it happened in (vm start waits on its own)
};

// A NIC of a VM: on every node its tap joins `bridge`; the MAC is fixed when the VM is added, so a
// restart on another node (failover) and a live move keep it.
struct VmNic {
  std::string bridge;
  std::string mac;  // "52:54:00:..."; empty in a request: the node picks one
};
constexpr size_t kMaxVmNics = 4;

struct VmSpec {
  std::string name;
  uint32_t index = 0;       // VM lease slot kFirstVmSlot + index
  std::string kernel, initrd, cmdline;
  uint64_t mem_bytes = 256ull << 20;
  unsigned cpus = 1;
  std::string cpu_model = "baseline";  // "baseline": the cluster's common profile
  std::string disk;                    // a disk of this volume, or empty
  std::vector<VmNic> nics;
  std::vector<std::string> preferred_owners;
  bool ha = true;                      // restart on a survivor when its node dies
  bool running = false;                // desired state
  int64_t generation = 0;              // bumped by start: a new boot (not a restart after failover)
  std::optional<VmFailure> last_failure;
};

struct ClusterConfig {
  std::vector<NodeSpec> nodes;
  std::vector<VmSpec> vms;
  unsigned max_migrations_per_node = 1;
  unsigned migration_streams = 2;

  const NodeSpec* node(const std::string& name) const;
  NodeSpec* node(const std::string& name);
  const VmSpec* vm(const std::string& name) const;
  VmSpec* vm(const std::string& name);
  uint32_t vm_slot(const VmSpec& vm) const { return kFirstVmSlot + vm.index; }
};

nlohmann::json to_json(const ClusterConfig& c);
nlohmann::json to_json(const VmSpec& v);
// What a VM is made of (kernel .. ha) from its JSON; throws nlohmann::json errors on wrong types.
VmSpec vm_spec_from_json(const nlohmann::json& j);
// A VM's NICs: at most kMaxVmNics, bridge names Linux accepts, MACs (when set) unicast.
Status check_nics(const VmSpec& v);
// Checks every field; a config another version wrote with unknown fields keeps them out.
Result<ClusterConfig> config_from_json(const nlohmann::json& j);
Result<ClusterConfig> read_config(blockdev::Volume& vol);
// Read-modify-write under the admin lease: `edit` may refuse (Status::invalid) and nothing is written.
Status update_config(blockdev::Volume& vol, const std::string& owner,
                     const std::function<Status(ClusterConfig&)>& edit);

}  // namespace minihv::cluster
