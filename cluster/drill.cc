#include "cluster/drill.h"

namespace minihv::cluster {

namespace {

using Json = nlohmann::json;

Json find_vm(const Json& status, const std::string& name) {
  for (const auto& v : status.value("vms", Json::array()))
    if (v.value("name", "") == name) return v;
  return Json::object();
}

// Milliseconds from the kill until the node was declared dead; -1 when it was not (yet).
int64_t detected_ms(const Json& after, const std::string& victim, int64_t t0) {
  int64_t detected = -1;
  for (const auto& n : after.value("nodes", Json::array()))
    if (n.value("name", "") == victim && n.contains("dead_since_unix_ms"))
      detected = n.value("dead_since_unix_ms", int64_t{0}) - t0;
  return detected;
}

Json vm_verdict(const Json& after, const DrillVm& d, int64_t t0) {
  const std::string node = find_vm(after, d.name).value("node", "");
  const Json l = vm_process(after, node, d.name);
  auto rel = [&](const char* k) { return l.value(k, int64_t{0}) > 0 ? l.value(k, int64_t{0}) - t0 : -1; };
  const long resume = l.value("disk_resume", -1L);
  const bool disk_ok = d.disk.empty() || resume >= d.last_rec;
  const bool vm_ok = !node.empty() && l.value("errs", 1L) == 0 && l.value("corrupt", 1L) == 0 && disk_ok;
  return {{"vm", d.name}, {"node", node}, {"leased_ms", rel("leased_unix_ms")},
          {"started_ms", rel("started_unix_ms")}, {"first_heartbeat_ms", rel("first_hb_unix_ms")},
          {"errs", l.value("errs", -1L)}, {"corrupt", l.value("corrupt", -1L)},
          {"disk_resume", resume}, {"last_acknowledged", d.last_rec}, {"ok", vm_ok}};
}

}  // namespace

Json vm_process(const Json& status, const std::string& node, const std::string& vm) {
  if (!status.contains("node_status") || !status["node_status"].contains(node)) return Json::object();
  for (const auto& l : status["node_status"][node].value("local", Json::array()))
    if (l.value("name", "") == vm) return l;
  return Json::object();
}

Result<DrillPlan> plan_drill(const Json& status, const std::string& victim) {
  DrillPlan plan{victim, "", "", {}};
  for (const auto& n : status.value("nodes", Json::array())) {
    if (n.value("name", "") == victim) {
      if (n.value("state", "") != "up") return Status::invalid("node " + victim + " is not up");
      plan.victim_address = n.value("listen", "");
    } else if (n.value("state", "") == "up" && plan.observer_address.empty()) {
      plan.observer_address = n.value("listen", "");
    }
  }
  if (plan.victim_address.empty()) return Status::invalid("no node named '" + victim + "'");
  if (plan.observer_address.empty()) return Status::invalid("no other node is up to take over");
  for (const auto& v : status.value("vms", Json::array()))
    if (v.value("node", "") == victim)
      plan.vms.push_back({v.value("name", ""), v.value("disk", ""),
                          vm_process(status, victim, v.value("name", "")).value("last_rec", -1L)});
  return plan;
}

bool drill_settled(const Json& status, const DrillPlan& plan, int64_t killed_unix_ms) {
  for (const auto& d : plan.vms) {
    const std::string node = find_vm(status, d.name).value("node", "");
    if (node.empty() || node == plan.victim) return false;
    const Json l = vm_process(status, node, d.name);
    if (l.value("first_hb_unix_ms", int64_t{0}) <= killed_unix_ms) return false;
    if (!d.disk.empty() && l.value("disk_resume", -1L) < 0) return false;
  }
  return true;
}

Json drill_verdict(const Json& after, const DrillPlan& plan, int64_t killed_unix_ms, const Status& wait) {
  Json report = {{"node", plan.victim}, {"killed_unix_ms", killed_unix_ms}, {"vms", Json::array()}};
  report["detected_ms"] = detected_ms(after, plan.victim, killed_unix_ms);
  bool ok = bool(wait);
  for (const auto& d : plan.vms) {
    Json v = vm_verdict(after, d, killed_unix_ms);
    ok = ok && v.value("ok", false);
    report["vms"].push_back(std::move(v));
  }
  report["ok"] = ok;
  if (!wait) report["error"] = wait.message();
  return report;
}

}  // namespace minihv::cluster
