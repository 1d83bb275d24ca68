// cluster/node_metrics.h — what a node counts and times for Prometheus (`minihv node --metrics`).
//
// Owns: the node's counters and histograms (filled by the node as things happen) and turning them,
// with a view of the node's VMs at the moment of a scrape, into metric families. Serving them is
// metrics_server.h's job; rendering is common/metrics.h's. Every metric is listed in docs/metrics.md.
#pragma once

#include <array>
#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"

namespace minihv::cluster {

// Every state a node's VM can be in (node_local.h), so that each series exists from the start.
inline constexpr std::array<std::string_view, 5> kVmStates = {"starting", "incoming", "running", "migrating",
                                                              "stopping"};

// A node lease renewal is one 4 KiB O_DIRECT write and read: sub-millisecond on a local disk, the
// upper buckets show storage that eats into the fail timeout (lab default: renew 100 ms).
inline const std::vector<double> kLeaseRenewalBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,   0.1,   0.25,   0.5,   1,    2.5};
// A live migration's pause, from the DESIGN target (tens of ms) to the give-up side.
inline const std::vector<double> kDowntimeBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                     0.5,   1,    2.5,   5,    10};

struct NodeCounters {
  metrics::Histogram lease_renewal{kLeaseRenewalBuckets};  // seconds per successful node lease renewal
  std::atomic<uint64_t> lease_renewal_failures{0};
  std::atomic<int64_t> slowest_lease_renewal_us{0};  // any renewal, failed ones too (cluster validate)
  std::atomic<uint64_t> migrations_started{0}, migrations_succeeded{0}, migrations_failed{0};
  metrics::Histogram migration_downtime{kDowntimeBuckets};  // seconds, from the migration report
  std::atomic<uint64_t> failovers{0};  // VMs this node started because their node had died
};

// What the node holds at the moment of a scrape.
struct NodeView {
  struct Vm {
    std::string name, state;
    bool up = false;  // running with a live process
  };
  std::string node, version;
  std::vector<Vm> vms;
};

std::vector<metrics::Family> node_families(const NodeCounters& counters, const NodeView& view);

}  // namespace minihv::cluster
