// The VMs of a node: leases, child `minihv run` processes, their consoles, and their ends.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string_view>

#include "blockdev/lease_priority.h"
#include "cluster/child_output.h"
#include "cluster/node_local.h"
#include "cluster/timings.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/units.h"
#include "cpuid/baseline.h"
#include "cpuid/profile_json.h"
#include "vmm/api.h"
#include "vmm/devices/tap.h"

namespace minihv::cluster {

namespace {

using timings::kNoHeartbeatGrace;
using timings::kStopGrace;

void apply(Node::Local& l, const ConsoleFact& f, const std::string_view line) {
  switch (f.kind) {
    case ConsoleFact::kHeartbeat: {
      const int64_t now = unix_ms();
      if (l.heartbeats++ == 0) l.first_hb_unix_ms = now;
      if (l.up_unix_ms == 0) {
        l.up_unix_ms = now;
        l.up_by = "heartbeat";
      }
      l.last_hb_unix_ms = now;
      l.last_hb = std::string(line);
      l.errs = std::max(l.errs, f.errs);
      if (f.rec >= 0) l.last_rec = f.rec;
      break;
    }
    case ConsoleFact::kCorrupt: l.corrupt++; break;
    case ConsoleFact::kResume: l.disk_resume = f.resume; break;
    case ConsoleFact::kNone: break;
  }
}

// The tap of NIC i of VM `index` on the node with `host_id`: made (and removed) by the VM's own
// process, on the NIC's bridge. The host id in the name keeps a live move's two ends apart when two
// nodes share one network namespace. At most 15 characters ("mh" 3 digits "h" 2-3 "n" 1).
std::string vm_tap_name(uint32_t index, uint32_t host_id, size_t nic) {
  return "mh" + std::to_string(index) + "h" + std::to_string(host_id) + "n" + std::to_string(nic);
}

// `minihv run ...` for this VM: a fresh boot, or (`incoming` = IP:PORT) a migration's destination.
std::vector<std::string> child_args(const NodeOptions& o, uint32_t host_id, const Node::Local& l,
                                    const std::string& cpu_model, const std::string& incoming) {
  std::vector<std::string> args = {o.self_exe, "run", "--mem", std::to_string(l.spec.mem_bytes >> 20) + "M",
                                   "--cpus", std::to_string(l.spec.cpus), "--cpu-model", cpu_model,
                                   "--api", l.api, "--fence-fd", "3", "--deadlines-fd", "5"};
  if (incoming.empty()) {
    args.insert(args.end(), {"--kernel", l.spec.kernel, "--cmdline", l.spec.cmdline});
    if (!l.spec.initrd.empty()) args.insert(args.end(), {"--initrd", l.spec.initrd});
  } else {
    args.insert(args.end(), {"--incoming", incoming, "--tls-psk", l.move_key_file});
  }
  // The disk's extent comes as fd 4 (Node::spawn): the VM opens nothing of the volume.
  if (!l.spec.disk.empty()) args.insert(args.end(), {"--disk", o.volume + ":" + l.spec.disk, "--extent-fd", "4"});
  for (size_t i = 0; i < l.spec.nics.size(); ++i) {
    const VmNic& n = l.spec.nics[i];
    args.insert(args.end(), {"--net", "tap=" + vm_tap_name(l.spec.index, host_id, i) + ",bridge=" + n.bridge +
                                          (n.mac.empty() ? "" : ",mac=" + n.mac)});
  }
  return args;
}

}  // namespace

nlohmann::json Node::Local::to_json() const {
  nlohmann::json j = {{"name", spec.name},
                      {"state", std::string(to_string(phase))},
                      {"pid", pid->load()},
                      {"api", api},
                      {"console", console},
                      {"log", log},
                      {"started_unix_ms", started_unix_ms},
                      {"leased_unix_ms", leased_unix_ms},
                      {"first_hb_unix_ms", first_hb_unix_ms},
                      {"last_hb_unix_ms", last_hb_unix_ms},
                      {"heartbeats", heartbeats},
                      {"generation", spec.generation},
                      {"up_unix_ms", up_unix_ms},
                      {"up_by", up_by},
                      {"errs", errs},
                      {"corrupt", corrupt},
                      {"disk_resume", disk_resume},
                      {"last_rec", last_rec},
                      {"last_hb", last_hb},
                      {"restarts", restarts},
                      {"late_write_kills", late_write_kills}};
  if (!incoming_progress.is_null()) j["incoming"] = incoming_progress;
  if (exit_status) j["exit_status"] = *exit_status;
  if (!error.empty()) j["error"] = error;
  return j;
}

Node::Local::~Local() {
  cancel = true;
  child.reset();  // kills a child that still runs, joins its threads
  for (const auto& tap : user_taps)
    if (Status s = remove_persistent_tap(tap); !s) LOG_WARN("vm %s: %s", spec.name.c_str(), s.message().c_str());
}

std::shared_ptr<Node::Local> Node::new_local(const VmSpec& spec, VmPhase phase) {
  auto l = std::make_shared<Local>();
  l->spec = spec;
  l->phase = phase;
  // A VM run as --vm-user binds its control socket in a directory of its own (vm_dir()).
  l->api = vm_user_ ? vm_dir(spec.name) + "/api.sock" : o_.state_dir + "/" + spec.name + ".sock";
  l->console = o_.state_dir + "/" + spec.name + ".console";
  l->log = o_.state_dir + "/" + spec.name + ".log";
  locals_[spec.name] = l;
  return l;
}

// On its own thread: take the VM's leases (at once when the observer has watched them dead or
// free for long enough), open the fence, start the child.
void Node::start_vm(std::shared_ptr<Local> l, std::vector<blockdev::AcquireOptions> prior, const std::string& why) {
  workers_.spawn([this, l, prior = std::move(prior), why]() mutable {
    blockdev::use_lease_priority();  // a claim must land within the write window of its read
    const int64_t t0 = unix_ms();
    auto leases = acquire_vm_leases(*l, std::move(prior));
    if (!leases) {
      LOG_INFO("vm %s: not started here: %s", l->spec.name.c_str(), leases.message().c_str());
      forget(l->spec.name);
      return;
    }
    keep_leases(*l, std::move(*leases));
    if (l->cancel) {  // the node stops (run, ~Node): no child to start and stop again
      release_vm(*l);
      forget(l->spec.name);
      return;
    }
    std::fprintf(stderr, "minihv: node %s: vm %s: leases taken in %lld ms (%s)\n", o_.name.c_str(),
                 l->spec.name.c_str(), static_cast<long long>(unix_ms() - t0), why.c_str());
    Status s = check_boot_files(l->spec, o_.name, images_);  // (the configuration may predate --images)
    if (s) s = spawn(*l, "");
    if (!s) {  // it cannot run here (e.g. no common CPU baseline): say why, and let go of it
      LOG_ERROR("vm %s: cannot start: %s", l->spec.name.c_str(), s.message().c_str());
      Decision d;
      {
        std::lock_guard lock(mu_);
        vm_errors_[l->spec.name] = "cannot start on node " + o_.name + ": " + s.message();
        d = decide_for(*l, {VmEvent::Kind::kStartFailed});
      }
      if (d.record_failure) record_failure(l->spec.name, "cannot start: " + s.message(), l->spec.generation);
      release_vm(*l);
      forget(l->spec.name);
      return;
    }
    if (why == "failover") counters_.failovers++;
    std::lock_guard lock(mu_);
    (void)decide_for(*l, {VmEvent::Kind::kStarted});
  });
}

Result<std::vector<blockdev::LeaseSlot>> Node::vm_lease_slots(Local& l) {
  if (!l.vol) {
    auto v = blockdev::Volume::open(o_.volume, true);
    if (!v) return v.status();
    l.vol = std::move(*v);
  }
  blockdev::Volume& vol = *l.vol;
  std::vector<blockdev::LeaseSlot> slots;
  ClusterConfig c;
  {
    std::lock_guard lock(mu_);
    c = config_;
  }
  auto vm_slot = vol.vm_slot(c.vm_slot(l.spec), "vm " + l.spec.name);
  if (!vm_slot) return vm_slot.status();
  slots.push_back(*vm_slot);
  if (!l.spec.disk.empty()) {
    auto d = disk_lease_slot(l.spec.disk);
    if (!d) return d.status();
    slots.push_back(*d);
  }
  return slots;
}

Result<std::vector<std::unique_ptr<blockdev::Lease>>> Node::acquire_vm_leases(
    Local& l, std::vector<blockdev::AcquireOptions> opts, std::vector<std::unique_ptr<blockdev::Lease>> held) {
  auto slots_or = vm_lease_slots(l);
  if (!slots_or) return slots_or.status();
  const std::vector<blockdev::LeaseSlot>& slots = *slots_or;
  blockdev::Volume& vol = *l.vol;
  opts.resize(slots.size());
  held.resize(slots.size());
  // Step every acquisition together (those not already held): the disk's takes no longer than the VM's.
  std::vector<std::unique_ptr<blockdev::LeaseAcquirer>> acq(slots.size());
  std::vector<blockdev::Nanos> due(slots.size(), vol.clock().now());
  for (size_t i = 0; i < slots.size(); ++i)
    if (!held[i])
      acq[i] = std::make_unique<blockdev::LeaseAcquirer>(vol.device(), vol.clock(), vol.super().uuid, slots[i],
                                                         vol.super().timings, node_owner(o_.name), opts[i]);
  for (;;) {
    bool all_done = true;
    blockdev::Nanos next = vol.clock().now() + blockdev::Nanos(timings::kAcquireStep);
    for (size_t i = 0; i < acq.size(); ++i) {
      if (!acq[i] || acq[i]->done()) continue;
      all_done = false;
      if (vol.clock().now() >= due[i]) due[i] = acq[i]->step();
      if (!acq[i]->done()) next = std::min(next, due[i]);
    }
    if (all_done) break;
    if (l.cancel || fenced_) return Status::error("cancelled");
    const blockdev::Nanos wait = next - vol.clock().now();
    if (wait.count() > 0) vol.clock().sleep_for(std::min<blockdev::Nanos>(wait, timings::kAcquireNap));
  }
  for (size_t i = 0; i < acq.size(); ++i) {
    if (!acq[i]) continue;
    if (acq[i]->phase() != blockdev::LeaseAcquirer::Phase::kWon) return acq[i]->status();  // the others release
    held[i] = acq[i]->take();
  }
  return held;
}

void Node::keep_leases(Local& l, std::vector<std::unique_ptr<blockdev::Lease>> leases) {
  auto pid = l.pid;
  const std::string name = l.spec.name;
  std::vector<std::unique_ptr<blockdev::LeaseKeeper>> keepers;
  for (auto& lease : leases)
    keepers.push_back(std::make_unique<blockdev::LeaseKeeper>(std::move(lease), [pid, name](const std::string& why) {
      if (decide({}, {VmEvent::Kind::kLeaseLost}).action != Decision::Action::kKill) return;
      LOG_ERROR("vm %s: lease lost (%s): killing it", name.c_str(), why.c_str());
      signal_child(*pid, SIGKILL);
    }));
  std::lock_guard lock(mu_);
  if (fenced_)  // taken as the node was fenced: never written again (abandon_leases)
    for (auto& k : keepers) k->abandon();
  l.leases = std::move(keepers);
  l.leased_unix_ms = unix_ms();
  update_fence(l);
}

// "baseline": the common profile of every node in the configuration, written for the child.
Result<std::string> Node::cpu_model_for(const VmSpec& spec) {
  if (spec.cpu_model != "baseline") return spec.cpu_model;
  std::vector<cpuid::Profile> profiles;
  {
    std::lock_guard lock(mu_);
    for (const auto& n : config_.nodes) {
      if (n.cpu_profile.is_null()) continue;
      auto p = cpuid::profile_from_json(n.cpu_profile, "node " + n.name + "'s profile");
      if (!p) return p.status();
      profiles.push_back(std::move(*p));
    }
  }
  if (profiles.empty()) return std::string("host");
  auto b = cpuid::baseline(profiles);
  if (!b) return b.status().context("the cluster's baseline CPU");
  const std::string path = o_.state_dir + "/" + spec.name + ".cpu.json";
  std::ofstream(path) << json_text(cpuid::to_json(*b, "cluster baseline"), 1) << "\n";
  return path;
}

std::string Node::vm_dir(const std::string& vm) const { return o_.state_dir + "/" + vm + ".vm"; }

// Run as --vm-user, a VM process can reach only what is its own: a 0700 directory for its control
// socket, and a move's key file, both chowned to it. It cannot make taps (that takes CAP_NET_ADMIN):
// the node makes each NIC's tap, persistent and the user's, on its bridge and up; the VM attaches to
// it, and the node removes it once the VM is gone for good (~Local).
Status Node::prepare_for_vm_user(Local& l, const std::string& incoming) {
  if (!vm_user_) return Status::ok();
  if (!l.spec.nics.empty()) MINIHV_TRY(check_device_access(*vm_user_, kTunDevice).context("vm " + l.spec.name));
  for (size_t i = 0; i < l.spec.nics.size(); ++i) {
    const std::string tap = vm_tap_name(l.spec.index, host_id_, i);
    MINIHV_TRY(make_tap_for(tap, l.spec.nics[i].bridge, vm_user_->uid, vm_user_->gid)
                   .context("vm " + l.spec.name + ": making its tap for --vm-user " + vm_user_->text));
    if (std::find(l.user_taps.begin(), l.user_taps.end(), tap) == l.user_taps.end()) l.user_taps.push_back(tap);
  }
  const std::string dir = vm_dir(l.spec.name);
  ::mkdir(dir.c_str(), 0700);
  if (::chown(dir.c_str(), vm_user_->uid, vm_user_->gid) != 0 || ::chmod(dir.c_str(), 0700) != 0)
    return Status::from_errno("giving " + dir + " to --vm-user " + vm_user_->text);
  if (!incoming.empty() && !l.move_key_file.empty() && ::chown(l.move_key_file.c_str(), vm_user_->uid, vm_user_->gid) != 0)
    return Status::from_errno("giving " + l.move_key_file + " to --vm-user " + vm_user_->text);
  return Status::ok();
}

Status Node::spawn(Local& l, const std::string& incoming) {
  auto model = cpu_model_for(l.spec);
  if (!model) return model.status();
  if (!l.fence) {
    auto f = blockdev::Fence::create();
    if (!f) return f.status();
    std::lock_guard lock(mu_);
    l.fence = *f;
    update_fence(l);
  }
  l.child.reset();  // the last instance has ended: this joins what is left of its threads
  auto deadlines = blockdev::WriteDeadlines::create();
  if (!deadlines) return deadlines.status();
  {
    std::lock_guard lock(mu_);
    l.deadlines = *deadlines;
    l.late_write_kill = blockdev::Nanos(0);
    l.late_kill_unconfirmed = false;
    l.exit_status.reset();
    l.started_unix_ms = unix_ms();
    l.heartbeats = 0;
    l.first_hb_unix_ms = l.up_unix_ms = 0;
    l.up_by.clear();
    l.running = false;
    l.errs = l.corrupt = 0;
    l.disk_resume = -1;
  }
  MINIHV_TRY(prepare_for_vm_user(l, incoming));
  // The VM's own disk as a device of its own, its fd handed to the child; the node's copy closes
  // at the end of this function, and the kernel unbinds the device once the VM's is gone too.
  std::optional<blockdev::ExtentDevice> extent;
  if (!l.spec.disk.empty()) {
    auto e = extent_device(l.spec.disk);
    if (!e) return e.status().context("disk " + l.spec.disk);
    extent = std::move(e).value();
  }
  const ChildSpec spec{child_args(o_, host_id_, l, *model, incoming), l.api, l.console, l.log,
                       "# minihv node " + o_.name + ": instance started at unix ms " + std::to_string(unix_ms()) +
                           (incoming.empty() ? "" : " (incoming migration)") + "\n",
                       l.fence->fd(), extent ? extent->fd.get() : -1, l.deadlines->fd(),
                       vm_user_ ? &*vm_user_ : nullptr};
  Local* lp = &l;
  auto child = VmChild::spawn(
      spec, [this](const std::function<void()>& in_child) { return fork_on_spawner(in_child); }, l.pid,
      [this, lp](const ChildEvent& e) { on_child(*lp, e); });
  if (!child) return child.status();
  l.child = std::move(child).value();
  LOG_INFO("vm %s: pid %d", l.spec.name.c_str(), l.pid->load());
  return Status::ok();
}

void Node::on_child(Local& l, const ChildEvent& e) {
  using Kind = ChildEvent::Kind;
  if (e.kind == Kind::kExiting) {  // before its pid is freed: no instant kill may reach a reused one
    pids_.remove(e.pid);
    return;
  }
  std::lock_guard lock(mu_);
  switch (e.kind) {
    case Kind::kConsole: apply(l, e.console, e.text); return;
    case Kind::kIncoming: l.incoming_progress = e.progress; return;
    case Kind::kRunning: l.running = true; return;
    case Kind::kListening: l.incoming_address = e.text; break;
    case Kind::kArrived: l.migrated_in = true; break;
    case Kind::kEnded:
      l.exit_status = e.exit_status;
      l.error = e.text;
      break;
    case Kind::kExiting: return;
  }
  cv_.notify_all();
}

pid_t Node::fork_on_spawner(const std::function<void()>& in_child) {
  std::packaged_task<pid_t()> task([&] {
    const pid_t pid = ::fork();
    if (pid == 0) in_child();  // never returns
    if (pid < 0) return -errno;
    pids_.add(pid);
    return pid;
  });
  auto result = task.get_future();
  {
    std::lock_guard lock(spawn_mu_);
    spawn_q_.push_back(std::move(task));
  }
  spawn_cv_.notify_one();
  return result.get();
}

void Node::spawner_loop() {
  pthread_setname_np(pthread_self(), "spawner");
  for (;;) {
    std::packaged_task<pid_t()> task;
    {
      std::unique_lock lock(spawn_mu_);
      spawn_cv_.wait(lock, [&] { return spawn_quit_ || !spawn_q_.empty(); });
      if (spawn_q_.empty()) return;
      task = std::move(spawn_q_.front());
      spawn_q_.pop_front();
    }
    task();
  }
}

// Asks the child to stop (the guest is stopped, its disk drained and flushed), then kills it.
void Node::stop_child(Local& l) {
  if (l.pid->load() > 0) (void)api_call(l.api, {{"cmd", "stop"}}, timings::as_ms(timings::kStopAsk));
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, kStopGrace, [&] { return l.pid->load() <= 0; })) {
    LOG_WARN("vm %s did not stop within %lld s: killing it", l.spec.name.c_str(),
             static_cast<long long>(kStopGrace.count()));
    signal_child(*l.pid, SIGKILL);
    cv_.wait(lock, [&] { return l.pid->load() <= 0; });
  }
}

// The child has ended (or never ran): give its leases back; a fenced node abandons them instead
// (abandon_leases: its writes may land after another node has taken the VM over).
void Node::release_vm(Local& l) {
  std::vector<std::unique_ptr<blockdev::LeaseKeeper>> leases;
  {
    std::lock_guard lock(mu_);
    if (l.fence) l.fence->revoke();
    leases = std::move(l.leases);
  }
  const bool fenced = is_fenced();
  for (auto it = leases.rbegin(); it != leases.rend(); ++it) {
    if (fenced) (*it)->abandon();
    else if (Status s = (*it)->release(); !s) LOG_WARN("vm %s: %s", l.spec.name.c_str(), s.message().c_str());
  }
}

void Node::forget(const std::string& name) {
  std::shared_ptr<Local> l;
  {
    std::lock_guard lock(mu_);
    auto it = locals_.find(name);
    if (it == locals_.end()) return;
    l = it->second;
    locals_.erase(it);
    cv_.notify_all();
  }
  l->cancel = true;
  // Dropped outside the lock: the last reference's destructor joins the VM's threads.
}

VmFacts Node::facts_of(const Local& l) {
  const VmSpec* spec = config_.vm(l.spec.name);
  const bool leases_lost = std::any_of(l.leases.begin(), l.leases.end(), [](const auto& k) {
    return k->lease().lost() || !k->validity()->may_write();
  });
  return {l.phase, spec && spec->running, l.pid->load() > 0, leases_lost, l.restarts};
}

Decision Node::decide_for(Local& l, const VmEvent& e) {
  const Decision d = decide(facts_of(l), e);
  if (d.next_phase) l.phase = *d.next_phase;
  return d;
}

// Every tick: a VM the configuration no longer wants is asked to stop; a child that ended is
// restarted or let go of, as decide() says (cluster/vm_phase.h).
void Node::handle_exits() {
  std::vector<std::pair<std::shared_ptr<Local>, Decision>> todo;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, l] : locals_) {
      const VmEvent e = l->exit_status ? VmEvent::ended(*l->exit_status) : VmEvent{VmEvent::Kind::kTick};
      const Decision d = decide_for(*l, e);
      if (d.action != Decision::Action::kNothing) todo.emplace_back(l, d);
    }
  }
  for (auto& [l, d] : todo) {
    if (d.action == Decision::Action::kStop) workers_.spawn([this, l = l] { stop_child(*l); });
    else settle_end(l, d);
  }
}

void Node::settle_end(const std::shared_ptr<Local>& l, const Decision& d) {
  using Action = Decision::Action;
  const std::string& name = l->spec.name;
  int status = 0;
  std::string error;
  {
    std::lock_guard lock(mu_);
    status = l->exit_status.value_or(0);
    error = l->error.empty() ? "" : ": " + l->error;
    if (d.action == Action::kGiveUp)
      vm_errors_[name] = "ended with status " + std::to_string(status) + " " + std::to_string(l->restarts + 1) +
                         " times on node " + o_.name + error + "; given up (see " + l->log + ")";
  }
  if (d.action == Action::kHandBack)  // the cluster places it again once its leases have been quiet
    LOG_WARN("vm %s: its leases were lost; giving it back to the cluster", name.c_str());
  if (d.record_failure)
    record_failure(name, "ended with status " + std::to_string(status) + error + " (log " + l->log + ")",
                   l->spec.generation);
  if (d.action != Action::kRestart) return let_go(*l, d);
  if (restart(*l, status)) return;
  Decision failed;  // as for a first start that failed: the phase and the give-up follow decide()
  {
    std::lock_guard lock(mu_);
    failed = decide_for(*l, {VmEvent::Kind::kStartFailed});
  }
  let_go(*l, failed);
}

// Carries out a decision that lets the VM go: off for good if it says so, leases back, forgotten.
void Node::let_go(Local& l, const Decision& d) {
  if (d.turns_off()) turn_off(l.spec.name);
  release_vm(l);
  forget(l.spec.name);
}

bool Node::restart(Local& l, int status) {
  LOG_WARN("vm %s ended with status %d: restarting it here", l.spec.name.c_str(), status);
  {
    std::lock_guard lock(mu_);
    l.restarts++;
  }
  Status s = spawn(l, "");
  if (s) return true;
  std::lock_guard lock(mu_);
  vm_errors_[l.spec.name] = "restart on node " + o_.name + " failed: " + s.message();
  return false;
}

// The guest powered off, or keeps failing: it stays off until started again.
void Node::turn_off(const std::string& vm) {
  {
    std::lock_guard lock(mu_);
    const VmSpec* spec = config_.vm(vm);
    if (!spec || !spec->running) return;
  }
  (void)update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    if (VmSpec* v = c.vm(vm)) v->running = false;
    return Status::ok();
  });
}

}  // namespace minihv::cluster

namespace minihv::cluster {

void Node::record_failure(const std::string& vm, const std::string& reason, int64_t generation) {
  const VmFailure f{reason, o_.name, unix_ms(), generation};
  Status s = update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
    if (VmSpec* v = c.vm(vm)) v->last_failure = f;
    return Status::ok();
  });
  if (!s) LOG_WARN("vm %s: recording its failure (%s): %s", vm.c_str(), reason.c_str(), s.message().c_str());
}

// A guest that prints no heartbeats (a Linux guest) is up once it has run for kNoHeartbeatGrace
// and its control socket has said "running": the strongest sign of life it gives.
void Node::check_up() {
  std::lock_guard lock(mu_);
  const int64_t now = unix_ms();
  const int64_t grace = std::chrono::duration_cast<std::chrono::milliseconds>(kNoHeartbeatGrace).count();
  for (auto& [name, l] : locals_)
    if (l->phase == VmPhase::kRunning && l->running && l->pid->load() > 0 && l->up_unix_ms == 0 &&
        now - l->started_unix_ms >= grace) {
      l->up_unix_ms = now;
      l->up_by = "control socket";
    }
}

}  // namespace minihv::cluster
