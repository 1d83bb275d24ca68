#include "cluster/node_metrics.h"

#include <algorithm>

namespace minihv::cluster {

namespace {

using metrics::Family;
using metrics::Type;

Family counter(std::string name, std::string help, const std::atomic<uint64_t>& v) {
  return {std::move(name), std::move(help), Type::kCounter, {{{}, static_cast<double>(v.load())}}, {}};
}

Family vms_by_state(const NodeView& view) {
  Family f{"minihv_vms", "VMs this node holds, by state", Type::kGauge, {}, {}};
  for (std::string_view state : kVmStates) {
    const auto n = std::count_if(view.vms.begin(), view.vms.end(), [&](const NodeView::Vm& v) { return v.state == state; });
    f.samples.push_back({{{"state", std::string(state)}}, static_cast<double>(n)});
  }
  return f;
}

Family vm_up(const NodeView& view) {
  Family f{"minihv_vm_up", "1 when the VM runs on this node with a live process, 0 while it starts, arrives, "
                           "leaves or stops",
           Type::kGauge, {}, {}};
  for (const auto& v : view.vms) f.samples.push_back({{{"vm", v.name}}, v.up ? 1.0 : 0.0});
  return f;
}

}  // namespace

std::vector<Family> node_families(const NodeCounters& c, const NodeView& view) {
  std::vector<Family> out;
  out.push_back({"minihv_node_info", "This node: its name and minihv's version (always 1)", Type::kGauge,
                 {{{{"node", view.node}, {"version", view.version}}, 1}}, {}});
  out.push_back(vms_by_state(view));
  out.push_back(vm_up(view));
  out.push_back({"minihv_node_lease_renewal_seconds", "Time one successful renewal of the node lease took (write and read back)",
                 Type::kHistogram, {}, {c.lease_renewal.snapshot()}});
  out.push_back(counter("minihv_node_lease_renewal_failures_total",
                        "Node lease renewals that failed (I/O error or timeout; retried until the fail timeout)",
                        c.lease_renewal_failures));
  out.push_back(counter("minihv_migrations_started_total", "Live migrations this node started as the source",
                        c.migrations_started));
  out.push_back(counter("minihv_migrations_succeeded_total",
                        "Live migrations from this node that ended with the VM running on the destination",
                        c.migrations_succeeded));
  out.push_back(counter("minihv_migrations_failed_total", "Live migrations from this node that did not move the VM",
                        c.migrations_failed));
  out.push_back({"minihv_migration_downtime_seconds", "How long the guest was paused in each successful switchover",
                 Type::kHistogram, {}, {c.migration_downtime.snapshot()}});
  out.push_back(counter("minihv_failovers_total", "VMs this node started because the node that ran them had died",
                        c.failovers));
  return out;
}

}  // namespace minihv::cluster
