// What a node does on request: configuration edits, live moves, drains, status, validation.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "blockdev/lease_priority.h"
#include "cluster/node_move.h"
#include "cluster/timings.h"
#include "cluster/placement.h"
#include "cluster/probe.h"
#include "cluster/validate.h"
#include "cluster/rpc.h"
#include "common/log.h"
#include "common/net.h"
#include "common/units.h"
#include "migrate/migration.h"

namespace minihv::cluster {

namespace {

using namespace timings;

// validate --nodes: addresses probed at once, each on a thread of its own.
constexpr size_t kMaxValidateTargets = 64;

nlohmann::json invalid(const std::string& msg) { return error_reply(Status::invalid(msg)); }

std::string host_of(const std::string& host_port) {
  auto ep = net::parse_endpoint(host_port);
  return ep ? ep->host : host_port;
}

std::string port_of(const std::string& host_port) {
  auto ep = net::parse_endpoint(host_port);
  return ep ? std::to_string(ep->port) : "0";
}

}  // namespace

nlohmann::json Node::handle(const nlohmann::json& req, const ApiServer::Progress& progress) {
  std::string cmd;
  try {
    cmd = req.value("cmd", "");
    if (cmd == "ping") return {{"ok", true}, {"node", o_.name}};
    if (cmd == "status") return status_json();
    if (cmd == "cluster_status") return cluster_status(req);
    if (cmd == "vm_add") return add_vm(req);
    if (cmd == "vm_set") return set_vm(req);
    if (cmd == "vm_rm") return remove_vm(req);
    if (cmd == "node_rm") return remove_node(req);
    if (cmd == "check_vm") return check_vm_reply(req);
    if (cmd == "vm_start" || cmd == "vm_stop" || cmd == "node_resume") return edit_vm(req);
    if (cmd == "move") return move(req, progress);
    if (cmd == "move_local") return move_local(req.value("vm", ""), req.value("to", ""), req, progress);
    if (cmd == "prepare_incoming") return prepare_incoming(req);
    if (cmd == "cancel_incoming") return cancel_incoming(req);
    if (cmd == "handoff_begin" || cmd == "handoff_done") return handoff(req);
    if (cmd == "drain" || cmd == "drain_local") return drain(req, progress);
    if (cmd == "probe") return probe_reply(req);
    if (cmd == "validate") return validate(req);
    if (cmd == "die") {  // a failover drill: this node and its VMs vanish at once, as in a power cut
      kill_all_children();
      ::kill(::getpid(), SIGKILL);
    }
  } catch (const std::exception& e) {
    return invalid(std::string("malformed request: ") + e.what());
  }
  return invalid("unknown command '" + cmd + "'");
}

nlohmann::json Node::move(const nlohmann::json& req, const ApiServer::Progress& progress) {
  const std::string vm = req.value("vm", ""), to = req.value("to", "");
  std::string holder, holder_addr;
  {
    std::lock_guard lock(mu_);
    const VmSpec* spec = config_.vm(vm);
    if (!spec) return invalid("no VM named '" + vm + "'");
    if (!config_.node(to)) return invalid("no node named '" + to + "'");
    holder = holder_of(*spec);
    if (holder.empty()) return invalid("VM " + vm + " is not running on any node");
    if (holder == to) return invalid("VM " + vm + " already runs on " + to);
    holder_addr = config_.node(holder) ? config_.node(holder)->listen : "";
  }
  if (holder == o_.name) return move_local(vm, to, req, progress);
  nlohmann::json fwd = req;
  fwd["cmd"] = "move_local";
  auto r = node_call(rpc_key_, holder_addr, fwd, kMoveTimeout, progress);
  return r ? *r : error_reply(r.status());
}

// This node runs `vm`: live-migrate it to `to` and hand its leases over (node_move.cc).
nlohmann::json Node::move_local(const std::string& vm, const std::string& to, const nlohmann::json& req,
                                const ApiServer::Progress& progress) {
  std::unique_ptr<OutgoingMove> m;
  {
    std::lock_guard lock(mu_);
    auto it = locals_.find(vm);
    if (it == locals_.end() || it->second->phase != VmPhase::kRunning)
      return invalid("VM " + vm + " is not running on node " + o_.name);
    const NodeSpec* t = config_.node(to);
    if (!t) return invalid("no node named '" + to + "'");
    if (to == o_.name) return invalid("VM " + vm + " already runs on " + to);
    auto st = node_state_.find(to);
    if (st == node_state_.end() || st->second != Liveness::kAlive) return invalid("node " + to + " is not up");
    if (t->paused) return invalid("node " + to + " is paused (drained); resume it first");
    if (migrations_ >= config_.max_migrations_per_node)
      return invalid("node " + o_.name + " already runs " + std::to_string(migrations_) +
                     " live migration(s), its limit (max_migrations_per_node); try again when it ends");
    m = std::make_unique<OutgoingMove>(*this, it->second, to, t->listen, config_.migration_streams);
  }
  try {
    return m->run(req, progress);
  } catch (const std::exception& e) {
    return invalid(std::string("malformed move request or reply: ") + e.what());
  }
}

// Gives the target the VM's leases without a gap (Lease::hand_over with the nonces it chose);
// whatever cannot be handed over is released, and the target claims it as a free lease.
void Node::hand_over_leases(Local& l, const std::string& to, const std::string& target_addr) {
  std::vector<std::unique_ptr<blockdev::LeaseKeeper>> leases;
  {
    std::lock_guard lock(mu_);
    if (l.fence) l.fence->revoke();
    leases = std::move(l.leases);
  }
  if (is_fenced()) {  // fenced: nothing is written (abandon_leases); the target claims them once they stand still
    for (auto& k : leases) k->abandon();
    return;
  }
  auto begin = node_call(rpc_key_, target_addr, {{"cmd", "handoff_begin"}, {"vm", l.spec.name}}, kHandOffCallTimeout);
  std::vector<uint64_t> nonces;
  if (begin && (*begin)["nonces"].is_array())
    for (const auto& n : (*begin)["nonces"])
      if (n.is_number_unsigned()) nonces.push_back(n.get<uint64_t>());
  for (size_t i = 0; i < leases.size(); ++i) {
    Status s = i < nonces.size() ? leases[i]->hand_over(node_owner(to), nonces[i])
                                 : Status::error("no nonce from " + to);
    if (!s) {
      LOG_WARN("vm %s: lease hand-over to %s: %s; releasing it instead", l.spec.name.c_str(), to.c_str(),
               s.message().c_str());
      if (is_fenced()) leases[i]->abandon();
      else if (Status r = leases[i]->release(); !r) LOG_WARN("vm %s: %s", l.spec.name.c_str(), r.message().c_str());
    }
  }
  (void)node_call(rpc_key_, target_addr, {{"cmd", "handoff_done"}, {"vm", l.spec.name}}, kHandOffCallTimeout);
}

namespace {

constexpr size_t kMoveIdHexChars = 32;  // 128 random bits: no two moves share a key

// Mints a move id and writes that move's key to `path` (0600; a stale file of an earlier incoming VM
// is replaced); returns the id, which the source derives the same key from.
Result<std::string> write_move_key(const Node& n, const std::string& path) {
  auto nonce = keys::random_secret();
  if (!nonce) return nonce.status();
  const std::string id = keys::to_text(*nonce).substr(0, kMoveIdHexChars);
  auto key = n.move_key(id);
  if (!key) return key.status();
  ::unlink(path.c_str());
  MINIHV_TRY(keys::write_key(path, *key));
  return id;
}

}  // namespace

nlohmann::json Node::prepare_incoming(const nlohmann::json& req) {
  const std::string vm = req.value("vm", "");
  std::shared_ptr<Local> l;
  {
    std::lock_guard lock(mu_);
    const VmSpec* spec = config_.vm(vm);
    if (!spec) return invalid("no VM named '" + vm + "'");
    if (locals_.count(vm)) return invalid("node " + o_.name + " already has VM " + vm);
    if (stopping_ || fenced_) return invalid("node " + o_.name + " is stopping");
    l = new_local(*spec, VmPhase::kIncoming);
    l->move_key_file = o_.state_dir + "/" + spec->name + ".move.key";
  }
  auto move_id = write_move_key(*this, l->move_key_file);
  const std::string ip = o_.migration_networks.empty() ? host_of(o_.listen) : o_.migration_networks.front();
  Status s = move_id ? spawn(*l, ip + ":0") : move_id.status();
  std::string address, why;
  if (s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kIncomingListenWait, [&] { return !l->incoming_address.empty() || l->exit_status; });
    address = l->incoming_address;
    why = l->error.empty() ? "it did not start listening" : l->error;
  }
  ::unlink(l->move_key_file.c_str());  // the child read it as it started (or never will)
  if (!s || address.empty()) {
    forget(vm);
    return error_reply(!s ? s : Status::error("node " + o_.name + ": the incoming VM process failed: " + why));
  }
  workers_.spawn([this, l] { receive_vm(l); });
  return {{"ok", true}, {"address", address}, {"move_id", *move_id}};
}

// The incoming side of a move, on its own thread: once the child holds the whole VM (or the source
// has handed the leases over, which it does only after that), adopt the handed-over leases and
// claim any others as their holder lets go (or dies); then open the fence and the guest runs. A
// child that ends first, or a cancel, gives up: this node never holds the leases of a VM it does
// not have.
void Node::receive_vm(std::shared_ptr<Local> l) {
  blockdev::use_lease_priority();
  {
    std::unique_lock lock(mu_);
    // A source that never comes (it died before connecting) is given up after a long move's time.
    cv_.wait_for(lock, kIncomingSourceWait,
                 [&] { return l->migrated_in || l->handoff_done || l->exit_status || l->cancel || fenced_; });
    if (!l->migrated_in && !l->handoff_done) {
      lock.unlock();
      signal_child(*l->pid, SIGKILL);
      forget(l->spec.name);
      return;
    }
    // The source hands over right after its process has gone: give it a moment.
    cv_.wait_for(lock, kHandOffSettle, [&] { return l->handoff_done || l->cancel; });
  }
  auto slots = vm_lease_slots(*l);
  std::vector<std::unique_ptr<blockdev::Lease>> held;
  if (slots) {
    std::vector<uint64_t> nonces;
    blockdev::Nanos asked{0};
    {
      std::lock_guard lock(mu_);
      if (l->handoff_done) nonces = l->handoff_nonces;
      asked = l->handoff_asked;
    }
    blockdev::Volume& vol = *l->vol;
    for (size_t i = 0; i < slots->size(); ++i) {
      if (i >= nonces.size()) {
        held.emplace_back();
        continue;
      }
      auto a = blockdev::adopt_lease(vol.device(), vol.clock(), vol.super().uuid, (*slots)[i], vol.super().timings,
                                     node_owner(o_.name), nonces[i], asked);
      if (!a) LOG_WARN("vm %s: %s", l->spec.name.c_str(), a.message().c_str());
      held.push_back(a ? std::move(*a) : nullptr);
    }
  }
  std::vector<blockdev::AcquireOptions> opts(2);
  for (auto& o : opts) {
    o.wait_for_live_holder = true;
    o.max_wait = kIncomingLeaseWait;
  }
  auto leases = acquire_vm_leases(*l, std::move(opts), std::move(held));
  if (!leases) {
    LOG_WARN("vm %s: incoming VM given up: %s", l->spec.name.c_str(), leases.message().c_str());
    signal_child(*l->pid, SIGKILL);
    forget(l->spec.name);
    return;
  }
  keep_leases(*l, std::move(*leases));
  std::lock_guard lock(mu_);
  (void)decide_for(*l, {VmEvent::Kind::kArrived});
  cv_.notify_all();
}

nlohmann::json Node::handoff(const nlohmann::json& req) {
  std::lock_guard lock(mu_);
  auto it = locals_.find(req.value("vm", ""));
  if (it == locals_.end() || it->second->phase != VmPhase::kIncoming) return invalid("no incoming VM " + req.value("vm", "") + " here");
  Local& l = *it->second;
  if (req.value("cmd", "") == "handoff_begin") {
    l.handoff_nonces.clear();
    const size_t n = l.spec.disk.empty() ? 1 : 2;
    for (size_t i = 0; i < n; ++i) l.handoff_nonces.push_back(blockdev::new_lease_nonce());
    l.handoff_asked = blockdev::system_clock().now();  // before the source can write: see adopt_lease
    l.handoff_pending = true;
    return {{"ok", true}, {"nonces", l.handoff_nonces}};
  }
  l.handoff_pending = false;
  l.handoff_done = true;
  cv_.notify_all();
  return {{"ok", true}};
}

nlohmann::json Node::cancel_incoming(const nlohmann::json& req) {
  std::lock_guard lock(mu_);
  auto it = locals_.find(req.value("vm", ""));
  if (it == locals_.end() || it->second->phase != VmPhase::kIncoming) return {{"ok", true}};
  it->second->cancel = true;
  signal_child(*it->second->pid, SIGKILL);
  cv_.notify_all();
  return {{"ok", true}};
}

// Moves every VM off a node, one live migration at a time, and pauses the node.
nlohmann::json Node::drain(const nlohmann::json& req, const ApiServer::Progress& progress) {
  const std::string node = req.value("node", o_.name);
  if (node != o_.name) {
    std::string addr;
    {
      std::lock_guard lock(mu_);
      const NodeSpec* n = config_.node(node);
      if (!n) return invalid("no node named '" + node + "'");
      addr = n->listen;
    }
    nlohmann::json fwd = req;
    fwd["cmd"] = "drain_local";
    auto r = node_call(rpc_key_, addr, fwd, kMoveTimeout, progress);
    return r ? *r : error_reply(r.status());
  }
  if (Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
        if (NodeSpec* n = c.node(o_.name)) n->paused = true;
        return Status::ok();
      });
      !s)
    return error_reply(s);
  nlohmann::json moved = nlohmann::json::array(), failed = nlohmann::json::array();
  for (;;) {
    std::string vm, to;
    {
      std::lock_guard lock(mu_);
      std::vector<NodeLoad> candidates;
      for (const auto& n : live_nodes(false))
        if (n != o_.name) candidates.push_back({n, config_.node(n)->host_id, 0, 0});
      for (auto& [name, holder] : vm_holder_)
        for (auto& c : candidates)
          if (c.name == holder) c.vms++;
      for (auto& [name, l] : locals_) {
        if (l->phase != VmPhase::kRunning) continue;
        bool tried = false;
        for (const auto& f : failed) tried |= f.value("vm", "") == name;
        if (tried) continue;
        auto target = choose_node(l->spec, candidates);
        if (!target) return invalid("no other node is up to take VM " + name);
        vm = name;
        to = *target;
        break;
      }
    }
    if (vm.empty()) break;
    progress({{"event", "moving"}, {"vm", vm}, {"to", to}});
    nlohmann::json r = move_local(vm, to, req, progress);
    if (r.value("ok", false)) moved.push_back({{"vm", vm}, {"to", to}, {"total_ms", r["total_ms"]}});
    else failed.push_back({{"vm", vm}, {"to", to}, {"error", r.value("error", "")}});
  }
  nlohmann::json r = {{"ok", failed.empty()}, {"node", o_.name}, {"moved", moved}, {"failed", failed}};
  if (!failed.empty()) r["error"] = std::to_string(failed.size()) + " VM(s) could not be moved off node " + o_.name;
  return r;
}

// Every node's own status (its VMs' processes and consoles), gathered from the nodes that are up.
nlohmann::json Node::cluster_status(const nlohmann::json&) {
  // What was just edited through another node shows at once, not at this node's next tick.
  if (Status s = refresh_config(); !s) LOG_WARN("reading the cluster configuration: %s", s.message().c_str());
  nlohmann::json mine = status_json();
  nlohmann::json per_node = nlohmann::json::object();
  for (const auto& n : mine["nodes"]) {
    const std::string name = n["name"];
    if (name == o_.name) {
      per_node[name] = mine;
      continue;
    }
    if (n["state"] != "up") continue;
    auto s = node_call(rpc_key_, n["listen"], {{"cmd", "status"}}, kPeerStatusTimeout);
    per_node[name] = s ? *s : nlohmann::json{{"ok", false}, {"error", s.message()}};
  }
  mine["node_status"] = per_node;
  return mine;
}

// This host's facts, and whether it reaches the peers' migration networks (asked by validate).
nlohmann::json Node::probe_reply(const nlohmann::json& req) {
  ProbeContext ctx;
  ctx.node = o_.name;
  ctx.host_id = host_id_;
  ctx.listen = o_.listen;
  ctx.migration_networks = o_.migration_networks;
  ctx.volume = obs_vol_.get();
  ctx.volume_path = o_.volume;
  if (auto slot = obs_vol_->node_slot(host_id_)) ctx.lease_slot = *slot;
  ctx.slowest_renewal_us = counters_.slowest_lease_renewal_us.load();
  if (watchdog_ && watchdog_->armed()) {  // set before the node serves; armed() is for any thread
    ctx.watchdog = watchdog_->path();
    ctx.watchdog_timeout_s = watchdog_->timeout().count();
  }
  {
    std::lock_guard lock(mu_);
    for (auto& [name, l] : locals_) ctx.vms_mem_bytes += l->spec.mem_bytes;
  }
  nlohmann::json reach = nlohmann::json::array();
  for (const auto& peer : req.value("peers", nlohmann::json::array())) {
    const std::string network = peer.value("network", "");
    auto rtt = ping(rpc_key_, network, kPingTimeout);
    reach.push_back({{"from", o_.name}, {"to", peer.value("node", "")}, {"network", network}, {"ok", bool(rtt)},
                     {"rtt_ms", rtt ? *rtt : 0.0}, {"error", rtt ? "" : rtt.message()}});
  }
  return {{"ok", true}, {"probe", probe_local(ctx)}, {"reach", reach}};
}

// Probes every node (those of the configuration, or the addresses asked for) and judges the lot.
nlohmann::json Node::validate(const nlohmann::json& req) {
  ValidateInput in;
  in.cluster = vol_->super().cluster;
  in.volume_uuid = uuid_;
  in.timings = vol_->super().timings;
  {
    std::lock_guard lock(mu_);
    in.config = config_;
  }
  std::vector<std::pair<std::string, std::string>> targets;  // name, address
  if (req.contains("nodes") && !req["nodes"].empty()) {
    if (req["nodes"].size() > kMaxValidateTargets)  // one thread per target: a request must not make thousands
      return error_reply(Status::invalid("validate: at most " + std::to_string(kMaxValidateTargets) + " --nodes"));
    for (const auto& a : req["nodes"]) targets.push_back({"", a.get<std::string>()});
  } else {
    for (const auto& n : in.config.nodes) targets.push_back({n.name, n.listen});
  }
  // Every node tests every other configured node's migration networks (or its control address).
  std::vector<std::pair<std::string, std::string>> networks;
  for (const auto& n : in.config.nodes) {
    if (n.migration_networks.empty()) networks.push_back({n.name, n.listen});
    for (const auto& ip : n.migration_networks) networks.push_back({n.name, ip + ":" + port_of(n.listen)});
  }
  std::vector<std::thread> threads;
  in.nodes.resize(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    threads.emplace_back([&, i] {
      NodeResult& r = in.nodes[i];
      r.name = targets[i].first;
      r.address = targets[i].second;
      nlohmann::json peers = nlohmann::json::array();
      for (const auto& [node, network] : networks)
        if (node != r.name) peers.push_back({{"node", node}, {"network", network}});
      r.asked_unix_ms = unix_ms();
      auto reply = node_call(rpc_key_, r.address, {{"cmd", "probe"}, {"peers", peers}}, kProbeTimeout);
      r.answered_unix_ms = unix_ms();
      if (reply) read_probe_reply(r, *reply);  // (a malformed reply fails this node, on this thread)
      else r.error = reply.message();
    });
  }
  for (auto& t : threads) t.join();
  in.generated_unix_ms = unix_ms();
  return {{"ok", true}, {"report", cluster::validate(in)}};
}

}  // namespace minihv::cluster
