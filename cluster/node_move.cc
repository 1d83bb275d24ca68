// One live move of a VM this node runs, to another node (Node::move_local): prepare the target,
// migrate, wait for the source process to go, hand the leases over, wait for the target to run it.
#include <signal.h>

#include <chrono>
#include <thread>

#include "cluster/node_move.h"
#include "cluster/rpc.h"
#include "cluster/timings.h"
#include "migrate/migration.h"

namespace minihv::cluster {

using namespace timings;

nlohmann::json Node::OutgoingMove::run(const nlohmann::json& req, const ApiServer::Progress& progress) {
  const int64_t t0 = unix_ms();
  auto result = migrate(req, progress);
  if (!result) return error_reply(result.status());
  left_ = true;
  n_.counters_.migration_downtime.observe(result->value("downtime_ms", 0.0) / 1000.0);
  // The VM runs on `to` now, paused there until it holds the leases. Once our process is gone
  // (reaped: nothing of it can still reach the disk), hand them over.
  wait_source_gone();
  const int64_t released = unix_ms();
  n_.hand_over_leases(*l_, to_, addr_);
  n_.forget(vm_);
  const int64_t resumed = wait_target_running();
  nlohmann::json r = {{"ok", resumed != 0},
                      {"vm", vm_},
                      {"from", n_.o_.name},
                      {"to", to_},
                      {"migration", *result},
                      {"total_ms", unix_ms() - t0},
                      {"handoff_ms", resumed ? resumed - released : -1}};
  if (!resumed) r["error"] = "node " + to_ + " did not take VM " + vm_ + "'s leases";
  moved_ = resumed != 0;
  std::lock_guard lock(n_.mu_);
  if (resumed) n_.vm_holder_[vm_] = to_;  // what the next observation will show; status says it now
  return r;
}

// Prepares the target and migrates; an error leaves the VM running here.
Result<nlohmann::json> Node::OutgoingMove::migrate(const nlohmann::json& req, const ApiServer::Progress& progress) {
  auto prepared =
      node_call(n_.rpc_key_, addr_, {{"cmd", "prepare_incoming"}, {"vm", vm_}, {"from", n_.o_.name}}, kPrepareTimeout);
  if (!prepared) return prepared.status().context("node " + to_ + " cannot take VM " + vm_);
  const std::string address = prepared->value("address", "");
  // The move's key: the destination's child holds it; this VM gets it with the request (local socket).
  auto key = n_.move_key(prepared->value("move_id", ""));
  if (!key) {
    (void)node_call(n_.rpc_key_, addr_, {{"cmd", "cancel_incoming"}, {"vm", vm_}}, kCancelTimeout);
    return key.status().context("node " + to_ + " cannot take VM " + vm_);
  }
  progress({{"event", "prepared"}, {"vm", vm_}, {"to", to_}, {"address", address}});
  nlohmann::json mreq = {{"cmd", "migrate"},
                         {"to", address},
                         {"streams", req.value("streams", streams_)},
                         {"downtime_ms", req.value("downtime_ms", migrate::kDefaultDowntimeMs)},
                         {"max_time_s", req.value("max_time_s", migrate::kDefaultMaxSeconds)},
                         {"verify", req.value("verify", false)},
                         {"psk", keys::to_text(*key)}};
  auto result = api_call(l_->api, mreq, as_ms(kMigrateCallTimeout), [&](const nlohmann::json& p) { progress(p); });
  if (result && result->value("ok", false)) return result;
  (void)node_call(n_.rpc_key_, addr_, {{"cmd", "cancel_incoming"}, {"vm", vm_}}, kCancelTimeout);
  // A VM of ours runs only while this node's leases are current, so its source settles a lost
  // ACK by resuming ("lease"). It reports "in doubt" only when its fence had lapsed: then
  // this node is losing the leases, the VM's watchdog ends it, and resuming it here could
  // race a node that takes them — so nothing is resumed here.
  const std::string why = result ? result->value("error", "failed") : result.message();
  return Status::error("moving VM " + vm_ + " to " + to_ + ": " + why + "; it still runs on " + n_.o_.name);
}

void Node::OutgoingMove::wait_source_gone() {
  std::unique_lock lock(n_.mu_);
  if (!n_.cv_.wait_for(lock, kSourceExitWait, [&] { return l_->pid->load() <= 0; })) {
    signal_child(*l_->pid, SIGKILL);
    n_.cv_.wait(lock, [&] { return l_->pid->load() <= 0; });
  }
}

int64_t Node::OutgoingMove::wait_target_running() {
  int64_t resumed = 0;
  const auto backstop = std::chrono::steady_clock::now() + kIncomingLeaseWait + kHandOffWait;
  auto deadline = std::chrono::steady_clock::now() + kHandOffWait;
  while (std::chrono::steady_clock::now() < std::min(deadline, backstop) && !resumed) {
    if (auto s = node_call(n_.rpc_key_, addr_, {{"cmd", "status"}}, kTargetStatusTimeout))
      for (const auto& lv : (*s)["local"]) {
        if (lv.value("name", "") != vm_) continue;
        const std::string state = lv.value("state", "");
        if (state == to_string(VmPhase::kRunning)) resumed = lv.value("leased_unix_ms", int64_t{1});
        if (state == to_string(VmPhase::kIncoming)) deadline = std::chrono::steady_clock::now() + kHandOffWait;
      }
    if (!resumed) std::this_thread::sleep_for(kTargetStatusPoll);
  }
  return resumed;
}

}  // namespace minihv::cluster
