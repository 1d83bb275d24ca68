#include "cluster/node.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "blockdev/file_device.h"
#include "blockdev/lease_priority.h"
#include "cluster/node_local.h"
#include "cluster/placement.h"
#include "cluster/rpc.h"
#include "cluster/timings.h"
#include "cluster/test_hooks.h"
#include "common/log.h"
#include "common/net.h"
#include "cpuid/host.h"
#include "cpuid/profile_json.h"
#include "vmm/kvm.h"

namespace minihv::cluster {

namespace {

using timings::kConfirmAtLeast;
using timings::kFencePump;
using timings::kTick;

// What this host offers a guest, as stored in the configuration for the cluster's baseline.
nlohmann::json host_profile_json() {
  if (auto path = host_cpu_profile_from_env()) {  // a test pretending to be another CPU
    if (auto p = cpuid::load_profile(*path)) return cpuid::to_json(*p, *path);
  }
  auto host = cpuid::read_host_cpu();
  if (!host) return nullptr;
  return cpuid::to_json(cpuid::capability(*host), "node");
}

Status join(blockdev::Volume& vol, const NodeOptions& o, uint32_t& host_id) {
  const nlohmann::json profile = host_profile_json();
  return update_config(vol, node_owner(o.name), [&](ClusterConfig& c) {
    NodeSpec* n = c.node(o.name);
    if (!n) {
      if (c.nodes.size() >= blockdev::kNodeSlots)
        return Status::invalid("the cluster already has " + std::to_string(blockdev::kNodeSlots) + " nodes");
      uint32_t id = 1;
      while (std::any_of(c.nodes.begin(), c.nodes.end(), [&](const NodeSpec& x) { return x.host_id == id; })) ++id;
      c.nodes.push_back({});
      n = &c.nodes.back();
      n->name = o.name;
      n->host_id = id;
      n->joined_unix_ms = unix_ms();
    }
    n->listen = o.listen;
    n->migration_networks = o.migration_networks;
    n->cpu_profile = profile;  // (paused stays: a drained node that reboots stays drained)
    host_id = n->host_id;
    return Status::ok();
  });
}

// Undoes join(): the entry a failed start wrote goes back to what it was (or goes, if it was new).
Status leave(blockdev::Volume& vol, const std::string& name, uint32_t host_id, const std::optional<NodeSpec>& prior) {
  return update_config(vol, node_owner(name), [&](ClusterConfig& c) {
    NodeSpec* n = c.node(name);
    if (!n || n->host_id != host_id) return Status::ok();  // changed by someone else since: theirs
    if (prior) *n = *prior;
    else std::erase_if(c.nodes, [&](const NodeSpec& x) { return x.name == name; });
    return Status::ok();
  });
}

// The node's writable handle on the volume (leases, configuration). A test may make its writes land
// late (cluster/test_hooks.h) once it holds its lease, to kill the node with a renewal in flight;
// `late` is then the device to arm.
Result<std::unique_ptr<blockdev::Volume>> open_writable_volume(const std::string& path, blockdev::FileDevice*& late) {
  late = nullptr;
  if (!node_late_writes_ms_from_env()) return blockdev::Volume::open(path, true);
  auto dev = blockdev::FileDevice::open(path, blockdev::FileDevice::Mode::kReadWrite);
  if (!dev) return dev.status();
  late = dev->get();
  return blockdev::Volume::open_device(std::shared_ptr<blockdev::Device>(std::move(*dev)), blockdev::system_clock());
}

}  // namespace

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<Node>> Node::start(const NodeOptions& options) {
  MINIHV_TRY(blockdev::validate_name("node name", options.name));
  std::unique_ptr<Node> n(new Node(options));
  auto rpc_key = node_rpc_key(options.cluster_key);
  if (!rpc_key) return rpc_key.status();
  n->rpc_key_ = std::move(*rpc_key);
  auto images = ImageDirs::resolve(options.images);
  if (!images) return images.status();
  n->images_ = std::move(*images);
  ::mkdir(n->o_.state_dir.c_str(), 0700);
  struct stat st{};
  if (::stat(n->o_.state_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status::invalid("--state-dir " + n->o_.state_dir + " is not a directory that can be created");
  MINIHV_TRY(n->check_vm_user());
  Node* raw = n.get();
  if (!options.metrics.empty()) {  // before joining: a port in use changes nothing in the cluster
    auto m = MetricsServer::start(options.metrics, [raw] { return raw->metrics_text(); });
    if (!m) return m.status().context("--metrics " + options.metrics);
    n->metrics_server_ = std::move(*m);
  }
  blockdev::FileDevice* late_writes = nullptr;
  auto vol = open_writable_volume(options.volume, late_writes);
  if (!vol) return vol.status().context("--volume " + options.volume);
  n->vol_ = std::move(*vol);
  auto obs = blockdev::Volume::open(options.volume, false);
  if (!obs) return obs.status();
  n->obs_vol_ = std::move(*obs);
  n->uuid_ = blockdev::uuid_string(n->vol_->super().uuid);
  n->observer_ = std::make_unique<LeaseObserver>(*n->obs_vol_, n->vol_->super().timings.dead);
  MINIHV_TRY(n->join_cluster());
  if (late_writes) {
    const auto ms = *node_late_writes_ms_from_env();
    LOG_WARN("test hook: every write to the volume lands %llu ms late", static_cast<unsigned long long>(ms));
    late_writes->make_writes_late(std::chrono::milliseconds(ms));
  }
  n->ready_ = true;
  n->pump_ = std::thread([raw] { raw->fence_pump(); });
  n->spawner_ = std::thread([raw] { raw->spawner_loop(); });
  return n;
}

Status Node::serve() {
  auto handler = [this](const nlohmann::json& req, const ApiServer::Progress& p) {
    if (!ready_) return error_reply(Status::error("node " + o_.name + " is still joining the cluster"));
    return handle(req, p);
  };
  auto server = serve_tcp(o_.listen, rpc_key_, handler);
  if (!server) return server.status().context("--listen " + o_.listen);
  server_ = std::move(*server);
  // Answer on every migration network too, so validate can prove each one reachable.
  auto listen_ep = net::parse_endpoint(o_.listen);
  for (const auto& ip : o_.migration_networks) {
    if (!listen_ep || ip == listen_ep->host || listen_ep->host == "0.0.0.0") continue;
    auto extra = serve_tcp(ip + ":" + std::to_string(listen_ep->port), rpc_key_, handler);
    if (!extra) return extra.status().context("--migration-networks " + ip);
    migration_servers_.push_back(std::move(*extra));
  }
  return Status::ok();
}

Status Node::take_node_lease() {
  auto slot = vol_->node_slot(host_id_);
  if (!slot) return slot.status();
  slot->resource = "node " + o_.name;
  // A previous incarnation killed a moment ago still looks alive for up to `dead`: wait it out; a
  // twin that really runs keeps renewing and is refused after the wait.
  blockdev::AcquireOptions lo;
  lo.wait_for_live_holder = true;
  lo.max_wait = 2 * vol_->super().timings.dead;
  auto lease = vol_->acquire(*slot, node_owner(o_.name), lo);
  if (!lease)
    return Status::invalid("node " + o_.name + ": " + lease.message() +
                           " (another minihv node of this name is running; stop it or pick another --name)");
  Node* raw = this;
  node_lease_ = std::make_unique<blockdev::LeaseKeeper>(
      std::move(*lease), [raw](const std::string& why) { raw->on_node_lease_lost(why); },
      [raw](blockdev::Nanos took, bool ok) {
        const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
        if (us > raw->counters_.slowest_lease_renewal_us.load()) raw->counters_.slowest_lease_renewal_us.store(us);
        if (ok) raw->counters_.lease_renewal.observe(std::chrono::duration<double>(took).count());
        else raw->counters_.lease_renewal_failures++;
      });
  return arm_watchdog();
}

// `--vm-user`: resolved, and every path its VM processes need checked now, not at the first VM.
// The state directory becomes searchable but not listable (0711): a VM reaches its own files there
// by name (its own 0700 directory with its control socket, its CPU model, a move's key, chowned).
Status Node::check_vm_user() {
  if (o_.vm_user.empty()) return Status::ok();
  auto u = resolve_vm_user(o_.vm_user);
  if (!u) return u.status();
  MINIHV_TRY(check_device_access(*u, Kvm::device_path()));
  if (::chmod(o_.state_dir.c_str(), 0711) != 0) return Status::from_errno("chmod 0711 " + o_.state_dir);
  MINIHV_TRY(check_reachable(*u, o_.state_dir));
  MINIHV_TRY(check_reachable(*u, std::filesystem::path(o_.self_exe).parent_path().string()));
  vm_user_ = std::move(*u);
  return Status::ok();
}

// `--watchdog DEV`: armed once the node holds its lease, petted by the fence pump while that lease
// is renewed in time (cluster/watchdog.h).
Status Node::arm_watchdog() {
  if (o_.watchdog.empty()) return Status::ok();
  auto timeout = watchdog_timeout_for(vol_->super().timings);
  if (!timeout) return timeout.status().context("--watchdog " + o_.watchdog);
  auto w = Watchdog::arm(o_.watchdog, *timeout);
  if (!w) return w.status();
  watchdog_ = std::move(w).value();
  std::fprintf(stderr, "minihv: node %s: watchdog %s armed (%lld s): this host resets if the node stops renewing "
                       "its lease, or is fenced with a VM it cannot prove gone\n",
               o_.name.c_str(), o_.watchdog.c_str(), static_cast<long long>(timeout->count()));
  return Status::ok();
}

// Nothing is written before the checks: a known name takes its lease first (a live twin is
// refused; a previous incarnation being killed is waited out, and with it the port it listens
// on), then binds its ports; a new name binds its ports, then gets its host id from the write,
// then its lease. Whatever fails after the write is undone.
Status Node::join_cluster() {
  auto before = read_config(*vol_);
  if (!before) return before.status().context("reading the cluster configuration");
  std::optional<NodeSpec> prior;
  if (const NodeSpec* known = before->node(o_.name)) {
    prior = *known;
    host_id_ = known->host_id;
    MINIHV_TRY(take_node_lease());
  }
  if (Status bound = serve(); !bound) {  // a port in use
    if (node_lease_) (void)node_lease_->release();
    return bound;
  }
  const uint32_t leased_id = host_id_;
  Status s = join(*vol_, o_, host_id_).context("joining the cluster");
  if (s && node_lease_ && host_id_ != leased_id)  // `cluster node rm` of this name meanwhile
    s = Status::error("node " + o_.name + " was removed from the cluster while it joined; start it again");
  if (s && !node_lease_) s = take_node_lease();
  if (s) {
    auto cfg = read_config(*obs_vol_);
    if (cfg) config_ = std::move(*cfg);
    else s = cfg.status();
  }
  if (s) return s;
  if (Status r = leave(*vol_, o_.name, host_id_, prior); !r)
    LOG_WARN("putting the configuration back after a failed start: %s", r.message().c_str());
  if (node_lease_) (void)node_lease_->release();
  return s;
}

Result<keys::Secret> Node::move_key(const std::string& move_id) const {
  if (move_id.empty()) return Status::error("the destination gave no move id (a node older than TLS moves?)");
  return keys::derive(o_.cluster_key, keys::migration_label(move_id));
}

Node::~Node() {
  metrics_server_.reset();  // its scrapes read what follows
  std::map<std::string, std::shared_ptr<Local>> locals;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [name, l] : locals_) l->cancel = true;  // starters and receivers give up
    locals.swap(locals_);
    cv_.notify_all();
  }
  server_.reset();
  migration_servers_.clear();
  locals.clear();  // kills what still runs and joins the VMs' threads (unless a worker holds it)
  kill_all_children();  // those a worker holds: it ends soon after
  workers_.join_all();
  // A node that never ran (a start that failed after arming), or left run() without its end:
  // unless fenced, its VMs are gone (killed above, their workers joined) and it holds nothing;
  // fenced, nothing proved them gone, and the watchdog is left to reset the host.
  if (watchdog_ && fenced_) watchdog_->abandon();
  else if (watchdog_) watchdog_->disarm();
  if (pump_.joinable()) pump_.join();
  {
    std::lock_guard lock(spawn_mu_);
    spawn_quit_ = true;
  }
  spawn_cv_.notify_all();
  if (spawner_.joinable()) spawner_.join();
  // Last, and here rather than as a member: node_lease_ is declared before mu_ and would be
  // destroyed after it, while its keeper's threads may still call on_node_lease_lost, which locks
  // mu_ and cv_. Stopped here, its threads are joined while everything they touch still exists.
  // (After run() it has been released or abandoned already; this is for a node that never ran.)
  if (node_lease_) {
    if (fenced_) node_lease_->abandon();
    node_lease_.reset();
  }
}

void Node::stop(StopMode mode) {
  std::lock_guard lock(mu_);
  if (!stopping_) drain_on_stop_ = mode == StopMode::kDrain;
  stopping_ = true;
  cv_.notify_all();
}

int Node::run() {
  std::fprintf(stderr, "minihv: node %s (host id %u) serving on %s, volume %s (cluster %s)\n", o_.name.c_str(),
               host_id_, o_.listen.c_str(), o_.volume.c_str(), vol_->super().cluster.c_str());
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, kTick, [&] { return stopping_ || fenced_.load(); })) break;
    }
    tick();
  }
  if (fenced_) {
    kill_all_children();
    const bool proven = confirm_children_gone();
    abandon_leases();
    if (watchdog_ && proven) {
      watchdog_->disarm();
    } else if (watchdog_) {
      std::fprintf(stderr, "minihv: node %s: the watchdog %s stays armed and unpetted: it resets this host\n",
                   o_.name.c_str(), o_.watchdog.c_str());
      watchdog_->abandon();
    }
    return 1;
  }
  bool was_paused = false;
  {
    std::lock_guard lock(mu_);
    const NodeSpec* me = config_.node(o_.name);
    was_paused = me && me->paused;
  }
  if (drain_on_stop_) drain_before_stop();
  stop_all_vms();
  if (watchdog_) watchdog_->disarm();  // every VM has stopped: none can write any more
  server_.reset();
  migration_servers_.clear();
  metrics_server_.reset();
  if (is_fenced()) node_lease_->abandon();  // fenced during the stop: nothing more is written
  else if (Status s = node_lease_->release(); !s) LOG_WARN("node lease: %s", s.message().c_str());
  if (drain_on_stop_ && !was_paused)  // drained to stop, not to stay out: it takes VMs when it returns
    if (Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
          if (NodeSpec* me = c.node(o_.name)) me->paused = false;
          return Status::ok();
        });
        !s)
      LOG_WARN("un-pausing node %s after its drain: %s", o_.name.c_str(), s.message().c_str());
  std::fprintf(stderr, "minihv: node %s stopped\n", o_.name.c_str());
  return 0;
}

// Clean stop: every VM (left) stops and gives its leases back; the cluster restarts the highly
// available ones elsewhere. Starters and receivers give up first (as in ~Node), and are joined,
// so none starts a child or takes a lease behind the stop.
void Node::stop_all_vms() {
  std::vector<std::shared_ptr<Local>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, l] : locals_) {
      l->cancel = true;
      all.push_back(l);
    }
    cv_.notify_all();
  }
  workers_.join_all();
  for (auto& l : all) {
    std::fprintf(stderr, "minihv: node %s: stopping vm %s\n", o_.name.c_str(), l->spec.name.c_str());
    stop_child(*l);
  }
  for (auto& l : all) release_vm(*l);
  {
    std::lock_guard lock(mu_);
    locals_.clear();
  }
}

// SIGTERM: every VM moves live to another node, one at a time (as `cluster drain`); those that
// cannot move (no other node up, a failed move) are stopped cleanly by the caller, and say so.
void Node::drain_before_stop() {
  std::fprintf(stderr, "minihv: node %s: draining before it stops (its VMs move live to other nodes)\n",
               o_.name.c_str());
  const nlohmann::json r = drain({{"cmd", "drain_local"}, {"node", o_.name}}, [](const nlohmann::json&) {});
  for (const auto& m : r.value("moved", nlohmann::json::array()))
    std::fprintf(stderr, "minihv: node %s: vm %s moved to %s\n", o_.name.c_str(), m.value("vm", "").c_str(),
                 m.value("to", "").c_str());
  for (const auto& f : r.value("failed", nlohmann::json::array()))
    std::fprintf(stderr, "minihv: node %s: vm %s could not move to %s (%s): it is stopped instead\n",
                 o_.name.c_str(), f.value("vm", "").c_str(), f.value("to", "").c_str(), f.value("error", "").c_str());
  if (!r.value("ok", false) && r.contains("error") && !r.contains("failed"))
    std::fprintf(stderr, "minihv: node %s: drain: %s: what is left is stopped instead\n", o_.name.c_str(),
                 r.value("error", "").c_str());
}

void Node::tick() {
  auto cfg = read_config(*obs_vol_);
  if (!cfg) {  // go on with the last good one: VMs still end, restart and fail over
    LOG_WARN("reading the cluster configuration: %s", cfg.message().c_str());
  } else {
    std::lock_guard lock(mu_);
    config_ = std::move(*cfg);
  }
  observe_all();
  handle_exits();
  check_up();
  start_orphans();
}

void Node::observe_all() {
  ClusterConfig c;
  {
    std::lock_guard lock(mu_);
    c = config_;
  }
  std::map<std::string, Liveness> nodes;
  std::map<std::string, std::string> holders;
  for (const auto& n : c.nodes) {
    auto slot = vol_->node_slot(n.host_id);
    if (!slot) continue;
    (void)observer_->observe(*slot);
    nodes[n.name] = n.name == o_.name ? Liveness::kAlive : observer_->liveness(slot->offset);
  }
  for (const auto& vm : c.vms) {
    auto slot = vol_->vm_slot(c.vm_slot(vm), "vm " + vm.name);
    if (!slot) continue;
    (void)observer_->observe(*slot);
    if (!vm.disk.empty())
      if (auto d = disk_lease_slot(vm.disk)) (void)observer_->observe(*d);
    const SlotView* v = observer_->view(slot->offset);
    if (v && v->held() && observer_->liveness(slot->offset) == Liveness::kAlive) holders[vm.name] = owner_node(v->rec);
  }
  std::lock_guard lock(mu_);
  for (auto& [name, l] : nodes) {
    if (l == Liveness::kDead && node_dead_since_ms_.count(name) == 0) {
      node_dead_since_ms_[name] = unix_ms();
      LOG_WARN("node %s is dead: its lease has not changed for %lld ms", name.c_str(),
               static_cast<long long>(vol_->super().timings.dead.count()));
    }
    if (l != Liveness::kDead) node_dead_since_ms_.erase(name);
  }
  node_state_ = std::move(nodes);
  vm_holder_ = std::move(holders);
}

// VMs nobody holds (never started, stopped, or their node died) that should run: place them all
// deterministically and start the ones that land here.
void Node::start_orphans() {
  std::vector<const VmSpec*> orphans;
  std::vector<std::vector<blockdev::AcquireOptions>> priors;
  std::vector<NodeLoad> candidates;
  ClusterConfig c;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || fenced_) return;
    c = config_;
    for (const auto& n : c.nodes) {
      auto it = node_state_.find(n.name);
      if (n.paused || it == node_state_.end() || it->second != Liveness::kAlive) continue;
      candidates.push_back({n.name, n.host_id, 0, 0});
    }
    for (const auto& vm : c.vms) {
      auto h = vm_holder_.find(vm.name);
      if (h == vm_holder_.end()) continue;
      for (auto& cand : candidates)
        if (cand.name == h->second) {
          cand.vms++;
          cand.mem_bytes += vm.mem_bytes;
        }
    }
    for (const auto& vm : c.vms) {
      if (!vm.running || locals_.count(vm.name) || vm_holder_.count(vm.name)) continue;
      auto slot = vol_->vm_slot(c.vm_slot(vm), "vm " + vm.name);
      if (!slot || !observer_->quiet(slot->offset)) continue;  // held, or released a moment ago (a hand-off)
      if (!vm.ha && observer_->liveness(slot->offset) == Liveness::kDead) continue;  // stays down with its node
      std::vector<blockdev::AcquireOptions> prior;
      prior.push_back(observer_->acquire_options(slot->offset));
      if (!vm.disk.empty()) {
        auto d = disk_lease_slot(vm.disk);
        if (!d) continue;
        const uint64_t off = d->offset;
        if (!observer_->quiet(off)) continue;
        prior.push_back(observer_->acquire_options(off));
      }
      orphans.push_back(&vm);
      priors.push_back(std::move(prior));
    }
  }
  if (orphans.empty()) return;
  const auto placed = place_all(orphans, candidates);
  for (size_t i = 0; i < orphans.size(); ++i) {
    if (placed[i] != o_.name) continue;
    const bool failover = [&] {
      auto slot = vol_->vm_slot(c.vm_slot(*orphans[i]), "");
      return slot && observer_->liveness(slot->offset) == Liveness::kDead;
    }();
    std::shared_ptr<Local> l;
    {
      std::lock_guard lock(mu_);
      if (locals_.count(orphans[i]->name)) continue;
      l = new_local(*orphans[i], VmPhase::kStarting);
    }
    start_vm(l, priors[i], failover ? "failover" : "start");
  }
}

void Node::fence_pump() {
  pthread_setname_np(pthread_self(), "fence");
  std::vector<blockdev::Nanos> live_vm_grants;  // each lease of a VM not gone, as pet_watchdog wants
  if (!blockdev::use_lease_priority())
    LOG_WARN("no real-time priority for lease threads (needs root or CAP_SYS_NICE): a busy host may delay renewals");
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Stopping, it pets on until the watchdog is disarmed (or given up), after the VMs have gone.
      if (cv_.wait_for(lock, kFencePump, [&] { return stopping_ && locals_.empty() && !(watchdog_ && watchdog_->armed()); }))
        return;
      live_vm_grants.clear();
      for (auto& [name, l] : locals_) {
        update_fence(*l);
        check_write_deadlines(*l);
        if (l->pid->load() > 0)
          for (const auto& k : l->leases) live_vm_grants.push_back(k->validity()->granted());
      }
    }
    pet_watchdog(live_vm_grants);
  }
}

// The VM may write until the earliest validity of the node lease and of its own leases.
void Node::update_fence(Local& l) {
  if (!l.fence || l.leases.empty()) return;
  blockdev::Nanos until = node_lease_->validity()->until();
  for (auto& k : l.leases) until = std::min(until, k->validity()->until());
  l.fence->extend_to(until);
}

// A VM's disk write still in the kernel past its deadline (the fence it was handed over under,
// blockdev/write_deadlines.h) gets the VM killed at once: its storage is stuck, and were the node's
// lease to lapse now, that write could land after another node took the disk over. The VM is not
// gone until its writes are (VmChild waits for its disk device to be empty), and until then the
// node keeps the disk's lease, so no other node takes the disk. One still there after the grace a
// fenced node gives its VMs (`dead` - `fail`) is stuck for good: with a watchdog the node fences
// itself (the host is reset before any takeover and the VM fails over); without one it keeps the
// lease and says so.
void Node::check_write_deadlines(Local& l) {
  if (!l.deadlines || l.pid->load() <= 0) return;
  const blockdev::Nanos now = vol_->clock().now();
  const auto ms = [](blockdev::Nanos d) { return static_cast<long long>(d.count() / 1'000'000); };
  if (l.late_write_kill.count() == 0) {
    if (!l.deadlines->overdue(now)) return;
    LOG_ERROR("vm %s: a disk write has been in the kernel %lld ms past its deadline (the fence it was handed "
              "over under): killing the VM",
              l.spec.name.c_str(), ms(now - l.deadlines->oldest()));
    l.late_write_kill = now;
    l.late_write_kills++;
    signal_child(*l.pid, SIGKILL);
    return;
  }
  const blockdev::LeaseTimings& t = vol_->super().timings;
  if (l.late_kill_unconfirmed || now < l.late_write_kill + (t.dead - t.fail)) return;
  l.late_kill_unconfirmed = true;
  if (watchdog_) {
    LOG_ERROR("vm %s: killed %lld ms ago for a late disk write and not gone: node %s fences itself and its "
              "watchdog resets this host before another node may take the disk over",
              l.spec.name.c_str(), ms(now - l.late_write_kill), o_.name.c_str());
    kill_all_children();
    fenced_ = true;
    cv_.notify_all();
    return;
  }
  LOG_ERROR("vm %s: killed %lld ms ago for a late disk write and not gone (its write is stuck in the kernel): "
            "node %s keeps its disk's lease until it is, so no other node takes the disk over (with --watchdog "
            "it would fence itself and the VM would fail over)",
            l.spec.name.c_str(), ms(now - l.late_write_kill), o_.name.c_str());
}

void Node::on_node_lease_lost(const std::string& why) {
  // On a lease thread: kill first, talk later. The VMs' fences have closed already (they follow
  // the node lease's validity), so none of them writes; this ends them.
  kill_all_children();
  LOG_ERROR("node %s: node lease lost (%s): fenced", o_.name.c_str(), why.c_str());
  fenced_ = true;
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

// Fenced: this node's writes may land late, after another node has taken its VMs over; so it never
// writes a lease again (not even a release). The others take over once the records stand still.
void Node::abandon_leases() {
  {
    std::lock_guard lock(mu_);  // (a VM lease's on_lost only signals its child: no deadlock)
    for (auto& [name, l] : locals_)
      for (auto& k : l->leases) k->abandon();
  }
  node_lease_->abandon();  // joins its threads, whose on_lost takes mu_
}

// Judged by the node lease and by `live_vm_grants`: the validity last granted to each lease of
// every VM whose process is not gone (cluster/watchdog.h, pet_horizon). A VM's leases leave
// Local::leases only when released or handed over, which its node does once it is gone or paused
// with nothing in flight; what stays is held or lapsed.
void Node::pet_watchdog(std::span<const blockdev::Nanos> live_vm_grants) {
  if (!watchdog_ || fenced_) return;
  const blockdev::Nanos until = pet_horizon(node_lease_->validity()->until(), live_vm_grants);
  if (may_pet(vol_->clock().now(), until, vol_->super().timings, watchdog_->timeout())) watchdog_->pet();
}

bool Node::is_fenced() const { return fenced_ || !node_lease_->validity()->may_write(); }

void Node::kill_all_children() { pids_.kill_all(); }

// Fenced, its VMs killed: proves every VM process gone before another node may take their disks
// over (`dead` after the node's last renewal), or says that it cannot. A VM is gone once its
// process has ended and its disk device holds no request of it (VmChild), so a VM that is gone can
// write no more; one that is not (its writes stuck in the kernel) may still write after the
// takeover. A node that was stopped past `dead` (frozen, suspended) still waits a little, to tell a
// late end from none.
bool Node::confirm_children_gone() {
  using std::chrono::steady_clock;
  const blockdev::LeaseTimings& t = vol_->super().timings;
  const auto kill = steady_clock::now();
  // (granted(), not until(): a lease found lapsed is revoked, and its until() says nothing any more.)
  const auto takeover = kill + (node_lease_->validity()->granted() + (t.dead - t.fail) - vol_->clock().now());
  const std::vector<pid_t> still = pids_.wait_gone(std::max(takeover, kill + kConfirmAtLeast));
  const auto ms = [](steady_clock::duration d) {
    return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  const auto end = steady_clock::now();
  if (still.empty() && end <= takeover) {
    std::fprintf(stderr, "minihv: node %s fenced: its lease on the volume expired; every VM was killed and all "
                         "were gone %lld ms later, %lld ms before another node may take their disks over\n",
                 o_.name.c_str(), ms(end - kill), ms(takeover - end));
    return true;
  }
  if (still.empty()) {
    std::fprintf(stderr, "minihv: node %s fenced: its lease on the volume expired; every VM was killed and all "
                         "were gone %lld ms later, but %lld ms after another node could take their disks over "
                         "(this node had stopped past its lease's dead time): a write of theirs still in the "
                         "kernel then could have landed after the takeover\n",
                 o_.name.c_str(), ms(end - kill), ms(end - takeover));
  } else {
    std::string pids;
    for (pid_t p : still) pids += (pids.empty() ? "" : " ") + std::to_string(p);
    std::fprintf(stderr, "minihv: error: node %s fenced, but VM process(es) %s did not end within %lld ms of "
                         "the kill: their writes may still be in the kernel and can land after another node has "
                         "taken their disks over (docs/security.md, \"Writes after fencing\")\n",
                 o_.name.c_str(), pids.c_str(), ms(end - kill));
  }
  if (!watchdog_)
    std::fprintf(stderr, "minihv: node %s has no watchdog (--watchdog): nothing stops those writes; the lease's "
                         "dead - fail margin is all that covers them\n", o_.name.c_str());
  return false;
}

Result<blockdev::LeaseSlot> Node::disk_lease_slot(const std::string& disk) {
  std::lock_guard lock(disk_mu_);
  if (auto it = disk_slots_.find(disk); it != disk_slots_.end()) return it->second;
  auto d = obs_vol_->find_disk(disk);
  if (!d) return d.status();
  // An entry cannot change while a VM of the cluster uses the disk (rm needs its lease).
  return disk_slots_[disk] = obs_vol_->disk_slot(*d);
}

Result<blockdev::ExtentDevice> Node::extent_device(const std::string& disk) {
  std::lock_guard lock(disk_mu_);
  auto d = obs_vol_->find_disk(disk);
  if (!d) return d.status();
  return blockdev::make_extent_device(o_.volume, d->offset, d->size);
}

std::string Node::holder_of(const VmSpec& vm) {
  if (locals_.count(vm.name)) return o_.name;
  auto it = vm_holder_.find(vm.name);
  return it == vm_holder_.end() ? std::string() : it->second;
}

std::vector<std::string> Node::live_nodes(bool include_paused) {
  std::vector<std::string> out;
  for (const auto& n : config_.nodes) {
    auto it = node_state_.find(n.name);
    if (it != node_state_.end() && it->second == Liveness::kAlive && (include_paused || !n.paused))
      out.push_back(n.name);
  }
  return out;
}

nlohmann::json Node::status_json() {
  std::lock_guard lock(mu_);
  nlohmann::json nodes = nlohmann::json::array(), vms = nlohmann::json::array(), local = nlohmann::json::array();
  for (const auto& n : config_.nodes) {
    auto it = node_state_.find(n.name);
    const Liveness l = it == node_state_.end() ? Liveness::kUnknown : it->second;
    nlohmann::json j = {{"name", n.name},
                        {"host_id", n.host_id},
                        {"listen", n.listen},
                        {"migration_networks", n.migration_networks},
                        {"paused", n.paused},
                        {"state", l == Liveness::kAlive ? "up" : l == Liveness::kDead ? "dead"
                                                               : l == Liveness::kFree ? "down" : "unknown"}};
    if (auto d = node_dead_since_ms_.find(n.name); d != node_dead_since_ms_.end()) j["dead_since_unix_ms"] = d->second;
    nodes.push_back(j);
  }
  for (const auto& vm : config_.vms) {
    nlohmann::json j = to_json(ClusterConfig{{}, {vm}, 1, 1})["vms"][0];
    j["node"] = holder_of(vm);
    if (auto e = vm_errors_.find(vm.name); e != vm_errors_.end()) j["error"] = e->second;
    vms.push_back(j);
  }
  for (auto& [name, l] : locals_) local.push_back(l->to_json());
  return {{"ok", true},
          {"node", o_.name},
          {"host_id", host_id_},
          {"pid", ::getpid()},
          {"cluster", vol_->super().cluster},
          {"volume_uuid", uuid_},
          {"volume", o_.volume},
          {"fenced", fenced_.load()},
          {"nodes", nodes},
          {"vms", vms},
          {"local", local},
          {"max_migrations_per_node", config_.max_migrations_per_node},
          {"unix_ms", unix_ms()}};
}

std::string Node::metrics_text() {
  NodeView view{o_.name, MINIHV_VERSION, {}};
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, l] : locals_)
      view.vms.push_back({name, std::string(to_string(l->phase)), l->phase == VmPhase::kRunning && l->pid->load() > 0});
  }
  return metrics::render_exposition(node_families(counters_, view));
}

}  // namespace minihv::cluster
