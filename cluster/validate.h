// cluster/validate.h — is this cluster fit to run and move VMs? (minihv's Test-Cluster)
//
// Owns: judging what the nodes' probes (cluster/probe.h) and reachability tests say against the
// cluster's configuration, as a report of named checks (pass / warn / fail), and rendering that
// report as text or one self-contained HTML page.
// Must not know: how the probes were gathered. Everything here is pure: no I/O, no clocks beyond
// the time the caller stamps on the report.
//
// Checks, in report order: contact, kvm, volume, cpu, lease_io, migration_networks, clock,
// memory, config. The report is {cluster, volume_uuid, ok, generated_unix_ms, nodes[names],
// node_details[{name, address, answered, ...}], checks[{id, title, result, message, details[]}],
// baseline{vendor, features, phys_bits, feature_names, nodes, per_node, weakest_node, weakest_lacks,
// profile} (or {error})}; `ok` means no check failed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "blockdev/layout.h"
#include "cluster/config.h"

namespace minihv::cluster {

// One node's attempt to open a connection to another node's migration network address.
struct ReachResult {
  std::string from, to;
  std::string network;  // "10.0.1.3:7000"
  bool ok = false;
  double rtt_ms = 0;
  std::string error;
};

struct NodeResult {
  std::string name;
  std::string address;                   // where it was asked (its listen address)
  std::optional<nlohmann::json> probe;   // probe_local()'s answer
  std::string error;                     // set when the node could not be contacted
  int64_t asked_unix_ms = 0, answered_unix_ms = 0;  // wall time around the probe call, for skew
  std::vector<ReachResult> reach;        // this node's tests of the others' migration networks
};

struct ValidateInput {
  std::string cluster;
  std::string volume_uuid;
  ClusterConfig config;
  std::vector<NodeResult> nodes;
  blockdev::LeaseTimings timings;
  int64_t generated_unix_ms = 0;  // stamped on the report as is (0: unknown)
};

// Thresholds, named so the report and the tests agree.
constexpr int64_t kClockWarnMs = 100;
constexpr int64_t kClockFailMs = 2000;
constexpr uint64_t kVmMemHeadroomBytes = 64ull << 20;  // a VM's process and page tables

nlohmann::json validate(const ValidateInput& in);

// Fills r.probe, r.reach (and r.name when unknown) from a node's {"probe", "reach"} reply. A reply
// not of that form (another version's, or a broken peer's, e.g. {"progress": 1}) fails that node
// with r.error saying why, and leaves the rest of `r` as it was: never an exception.
void read_probe_reply(NodeResult& r, const nlohmann::json& reply);

// "PASS  Title: message" per check, details indented beneath, and a final verdict line.
std::string render_text(const nlohmann::json& report);
// One HTML page: inline CSS, no scripts or external resources, every value escaped.
std::string render_html(const nlohmann::json& report);

}  // namespace minihv::cluster
