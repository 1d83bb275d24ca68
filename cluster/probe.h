// cluster/probe.h — facts about this host for `minihv cluster validate`, gathered inside a node daemon.
//
// Owns: looking at this machine (KVM and its capabilities, the CPU profile a guest can get, lease
// I/O latency on the shared volume, the wall clock, memory) and writing it down as JSON.
// Must not know: other nodes or what a fact means for the cluster (cluster/validate.h judges).
// Nothing here throws or gives up: a fact that cannot be read is an "error" field beside it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "blockdev/volume.h"

namespace minihv::cluster {

struct ProbeContext {
  std::string node;
  uint32_t host_id = 0;
  std::string listen;
  std::vector<std::string> migration_networks;
  blockdev::Volume* volume = nullptr;  // the shared volume this node runs on (may be null)
  std::string volume_path;
  blockdev::LeaseSlot lease_slot;      // this node's lease slot, read to time lease I/O
  uint64_t vms_mem_bytes = 0;          // RAM committed to the VMs this node runs
  int64_t slowest_renewal_us = 0;      // this node's slowest lease renewal (read + write) since it started
  std::string watchdog = {};           // the watchdog device this node has armed ("": none)
  int64_t watchdog_timeout_s = 0;
};

constexpr unsigned kLeaseProbeReads = 20;

// A KVM capability the probe reports under kvm.caps.<key>. `required`: minihv cannot run a VM
// without it; otherwise a feature degrades (validate warns).
struct KvmCap {
  std::string_view key;
  bool required;
  std::string_view why;  // what minihv uses it for
  long cap;              // the KVM_CAP_ number
};
std::span<const KvmCap> kvm_caps();

// {node, host_id, pid, listen, migration_networks, volume{path, uuid, cluster, disks},
//  kvm{ok, error, api_version, caps{...}, software_kvm_pvm, advisory, advisory_reason},
//  cpu{vendor, model_name, profile, error}, lease_io{reads, p50_us, p99_us, max_us, error},
//  fencing{loop_devices, loop_error, watchdog, watchdog_timeout_s},
//  clock_unix_ms, mem_available_bytes, mem_total_bytes, vms_mem_bytes, bridges[]}
nlohmann::json probe_local(const ProbeContext& ctx);

// Whether `name` is a bridge in this host's (this network namespace's) network.
bool bridge_exists(const std::string& name);
// The bridges of this host, sorted.
std::vector<std::string> bridges();

// MemTotal and MemAvailable from /proc/meminfo, in bytes (0 when absent).
std::pair<uint64_t, uint64_t> meminfo();

}  // namespace minihv::cluster
