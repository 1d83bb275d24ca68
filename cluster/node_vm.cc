// The VMs of a node: leases, child `minihv run` processes, their consoles, and their ends.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
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

namespace minihv::cluster {

namespace {

using timings::kNoHeartbeatGrace;
using timings::kStopGrace;

std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args) v.push_back(a.data());
  v.push_back(nullptr);
  return v;
}

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

// `minihv run ...` for this VM: a fresh boot, or (`incoming` = IP:PORT) a migration's destination.
std::vector<std::string> child_args(const NodeOptions& o, const Node::Local& l, const std::string& cpu_model,
                                    const std::string& incoming) {
  std::vector<std::string> args = {o.self_exe, "run", "--mem", std::to_string(l.spec.mem_bytes >> 20) + "M",
                                   "--cpus", std::to_string(l.spec.cpus), "--cpu-model", cpu_model,
                                   "--api", l.api, "--fence-fd", "3"};
  if (incoming.empty()) {
    args.insert(args.end(), {"--kernel", l.spec.kernel, "--cmdline", l.spec.cmdline});
    if (!l.spec.initrd.empty()) args.insert(args.end(), {"--initrd", l.spec.initrd});
  } else {
    args.insert(args.end(), {"--incoming", incoming});
  }
  if (!l.spec.disk.empty()) args.insert(args.end(), {"--disk", o.volume + ":" + l.spec.disk});
  return args;
}

// Copies what the child writes on `in` to `sink` until it closes, and hands each read's lines on.
void copy_lines(UniqueFd in, const UniqueFd& sink, LineSplitter split,
                const std::function<void(const std::vector<std::string>&)>& on_lines) {
  char buf[4096];
  ssize_t n;
  while ((n = ::read(in.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n <= 0) continue;
    (void)!::write(sink.get(), buf, static_cast<size_t>(n));
    const auto lines = split.feed({buf, static_cast<size_t>(n)});
    if (!lines.empty()) on_lines(lines);
  }
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
                      {"restarts", restarts}};
  if (exit_status) j["exit_status"] = *exit_status;
  if (!error.empty()) j["error"] = error;
  return j;
}

Node::Local::~Local() {
  cancel = true;
  signal_child(*pid, SIGKILL);
  for (auto* t : {&out_reader, &err_reader})
    if (t->joinable()) t->join();
}

std::shared_ptr<Node::Local> Node::new_local(const VmSpec& spec, VmPhase phase) {
  auto l = std::make_shared<Local>();
  l->spec = spec;
  l->phase = phase;
  l->api = o_.state_dir + "/" + spec.name + ".sock";
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
    Status s = spawn(*l, "");
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

// The parent's ends of a child's stdout and stderr, the write ends it gets, and the files they go to.
struct Node::ChildIo {
  UniqueFd out_r, out_w, err_r, err_w, console, log;

  static Result<ChildIo> open(const Local& l, const std::string& banner) {
    ChildIo io;
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return Status::from_errno("pipe");
    io.out_r.reset(out[0]);
    io.out_w.reset(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return Status::from_errno("pipe");
    io.err_r.reset(err[0]);
    io.err_w.reset(err[1]);
    io.console.reset(::open(l.console.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    io.log.reset(::open(l.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!io.console.valid() || !io.log.valid()) return Status::from_errno("opening " + l.console + " / " + l.log);
    (void)!::write(io.console.get(), banner.data(), banner.size());
    (void)!::write(io.log.get(), banner.data(), banner.size());
    return io;
  }
};

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
  std::vector<std::string> args = child_args(o_, l, *model, incoming);
  auto io = ChildIo::open(l, "# minihv node " + o_.name + ": instance started at unix ms " + std::to_string(unix_ms()) +
                                 (incoming.empty() ? "" : " (incoming migration)") + "\n");
  if (!io) return io.status();
  const pid_t pid = fork_child(argv_of(args), io->out_w.get(), io->err_w.get(), l.fence->fd());
  if (pid < 0) return Status::from_errno("fork");
  io->out_w.reset();  // the child's now: the readers see its end
  io->err_w.reset();
  {
    std::lock_guard lock(pids_mu_);
    pids_.push_back(pid);
  }
  {
    std::lock_guard lock(mu_);
    l.pid->store(pid);
    l.exit_status.reset();
    l.started_unix_ms = unix_ms();
    l.heartbeats = 0;
    l.first_hb_unix_ms = 0;
    l.up_unix_ms = 0;
    l.up_by.clear();
    l.errs = l.corrupt = 0;
    l.disk_resume = -1;
  }
  start_readers(l, std::move(*io));
  LOG_INFO("vm %s: pid %d", l.spec.name.c_str(), pid);
  return Status::ok();
}

// The child: dies with its node (a VM must never outlive the process renewing its leases), console
// and log on pipes, the fence as fd 3 and no other fd of the node, default signal mask.
pid_t Node::fork_child(std::vector<char*> argv, int out, int err, int fence_fd) {
  const pid_t parent = ::getpid();
  return fork_on_spawner([&] {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setsid();  // a terminal's Ctrl-C or hang-up is for the node, not its VMs
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (fence_fd == 3) ::fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
    else ::dup2(fence_fd, 3);
    ::close_range(4, ~0U, 0);  // every fd not named above (they are close-on-exec too)
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    blockdev::use_normal_priority();  // raw syscalls only: async-signal-safe
    ::execv(argv[0], argv.data());
    ::_exit(127);
  });
}

// One reader per stream, each through one LineSplitter; the console's reader reaps the child.
void Node::start_readers(Local& l, ChildIo io) {
  Local* lp = &l;
  if (l.out_reader.joinable()) l.out_reader.join();
  if (l.err_reader.joinable()) l.err_reader.join();
  l.out_reader = std::thread([this, lp, in = std::move(io.out_r), console = std::move(io.console)]() mutable {
    blockdev::use_normal_priority();  // (created by a starter thread, which is real-time)
    copy_lines(std::move(in), console, LineSplitter(kMaxConsoleLine),
               [&](const std::vector<std::string>& lines) { on_console(*lp, lines); });
    reap(*lp);
  });
  l.err_reader = std::thread([this, lp, in = std::move(io.err_r), log = std::move(io.log)]() mutable {
    blockdev::use_normal_priority();
    copy_lines(std::move(in), log, LineSplitter(kMaxLogLine),
               [&](const std::vector<std::string>& lines) { on_log(*lp, lines); });
  });
}

void Node::on_console(Local& l, const std::vector<std::string>& lines) {
  std::vector<std::pair<ConsoleFact, const std::string*>> facts;
  for (const auto& line : lines)
    if (auto f = parse_console_line(line); f.kind != ConsoleFact::kNone) facts.emplace_back(f, &line);
  if (facts.empty()) return;
  std::lock_guard lock(mu_);
  for (const auto& [f, line] : facts) apply(l, f, *line);
}

void Node::on_log(Local& l, const std::vector<std::string>& lines) {
  for (const auto& line : lines) {
    LogFact f = parse_log_line(line);
    if (f.kind == LogFact::kNone) continue;
    std::lock_guard lock(mu_);
    if (f.kind == LogFact::kListening) l.incoming_address = std::move(f.text);
    else if (f.kind == LogFact::kError) l.error = std::move(f.text);
    else l.migrated_in = true;
    cv_.notify_all();
  }
}

// The child closed its stdout (it ended): reap it, and say how it ended.
void Node::reap(Local& l) {
  int status = 0;
  const pid_t p = l.pid->load();
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(p), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  l.pid->store(-1);  // before the pid is freed: nobody signals a reused pid
  while (::waitpid(p, &status, 0) < 0 && errno == EINTR) {
  }
  {
    std::lock_guard lock(pids_mu_);
    std::erase(pids_, p);
  }
  std::lock_guard lock(mu_);
  l.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  l.pid->store(-1);
  cv_.notify_all();
}

pid_t Node::fork_on_spawner(const std::function<void()>& in_child) {
  std::packaged_task<pid_t()> task([&] {
    const pid_t pid = ::fork();
    if (pid == 0) in_child();  // never returns
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
// and its control socket says "running": the strongest sign of life it gives.
void Node::check_up() {
  std::vector<std::shared_ptr<Local>> quiet;
  {
    std::lock_guard lock(mu_);
    const int64_t now = unix_ms();
    for (auto& [name, l] : locals_)
      if (l->phase == VmPhase::kRunning && l->pid->load() > 0 && l->up_unix_ms == 0 &&
          now - l->started_unix_ms >= std::chrono::duration_cast<std::chrono::milliseconds>(kNoHeartbeatGrace).count())
        quiet.push_back(l);
  }
  for (auto& l : quiet) {
    const pid_t pid = l->pid->load();
    auto st = api_call(l->api, {{"cmd", "status"}}, timings::as_ms(timings::kUpProbeTimeout));
    if (!st || st->value("state", "") != "running") continue;
    std::lock_guard lock(mu_);
    if (l->pid->load() == pid && l->up_unix_ms == 0) {
      l->up_unix_ms = unix_ms();
      l->up_by = "control socket";
    }
  }
}

}  // namespace minihv::cluster
