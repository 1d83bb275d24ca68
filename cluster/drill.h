// cluster/drill.h — a failover drill's plan and verdict, as pure functions of cluster status.
//
// A drill (`minihv cluster drill --kill NODE`) kills one node for real and watches its VMs come
// back elsewhere. What it reads and decides lives here, fed "cluster_status" replies, so a unit
// test drives it with made-up views; the CLI only asks the nodes, waits and prints.
// Owns: which node watches, which VMs must come back, when they have, and pass or fail.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace minihv::cluster {

// One VM's process entry ("local") from the node that runs it, or {} when that node does not list it.
nlohmann::json vm_process(const nlohmann::json& status, const std::string& node, const std::string& vm);

struct DrillVm {
  std::string name, disk;
  long last_rec = -1;  // the last record the old instance had acknowledged
};

struct DrillPlan {
  std::string victim;           // the node to kill
  std::string victim_address;   // where to tell it to die
  std::string observer_address; // another node that is up: it watches the failover
  std::vector<DrillVm> vms;     // the victim's VMs, each of which must run again elsewhere
};

// From a status before the kill: refused (invalid input) when `victim` is not an up node or no
// other node is up.
Result<DrillPlan> plan_drill(const nlohmann::json& status, const std::string& victim);

// Whether the failover is over: every VM of the victim has had its first heartbeat elsewhere after
// `killed_unix_ms`, and a disk VM has reported where its disk resumed.
bool drill_settled(const nlohmann::json& status, const DrillPlan& plan, int64_t killed_unix_ms);

// The report: {"node", "killed_unix_ms", "detected_ms", "vms": [...], "ok"[, "error"]}. `after`: the
// status the wait ended with (an empty object when it ended without one); `wait`: how the wait for
// drill_settled() ended (its message is the report's "error"). A VM passes when it runs somewhere with no errs, no corrupt pages and,
// with a disk, resumed at or after the last record it had acknowledged; the drill, when the wait
// settled and every VM passed.
nlohmann::json drill_verdict(const nlohmann::json& after, const DrillPlan& plan, int64_t killed_unix_ms,
                             const Status& wait);

}  // namespace minihv::cluster
