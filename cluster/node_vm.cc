// The VMs of a node: leases, child `minihv run` processes, their consoles, and their ends.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <charconv>
#include <regex>
#include <string_view>

#include "blockdev/lease_priority.h"
#include "cluster/node_local.h"
#include "common/log.h"
#include "common/units.h"
#include "cpuid/baseline.h"
#include "cpuid/profile_json.h"
#include "vmm/api.h"

namespace minihv::cluster {

namespace {

constexpr unsigned kMaxRestarts = 3;          // a VM that keeps failing on its node is given up
constexpr auto kStopGrace = std::chrono::seconds(10);
// A guest without heartbeats counts as up after running this long with its control socket answering.
constexpr auto kNoHeartbeatGrace = std::chrono::seconds(3);
constexpr int kUpProbeTimeoutMs = 500;

std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args) v.push_back(a.data());
  v.push_back(nullptr);
  return v;
}

// A decimal number in `s` after `key` ("errs="), or -1; never throws whatever the guest prints.
long field(std::string_view s, std::string_view key) {
  const size_t at = s.find(key);
  if (at == std::string_view::npos) return -1;
  long v = -1;
  const char* b = s.data() + at + key.size();
  auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  return ec == std::errc() && p != b ? v : -1;
}

// What one console line says about the guest (lines are capped at kMaxConsoleLine).
struct ConsoleFact {
  enum Kind { kNone, kHeartbeat, kCorrupt, kResume } kind = kNone;
  long errs = -1, rec = -1, resume = -1;
};

ConsoleFact parse_console_line(std::string_view line) {
  ConsoleFact f;
  if (line.rfind("HB cpu=", 0) == 0) {
    f.kind = ConsoleFact::kHeartbeat;
    f.errs = field(line, " errs=");
    f.rec = field(line, " rec=");
  } else if (line.rfind("CORRUPT", 0) == 0) {
    f.kind = ConsoleFact::kCorrupt;
  } else if (line.rfind("DISK resume last=", 0) == 0) {
    f.kind = ConsoleFact::kResume;
    f.resume = field(line, "last=");
  }
  return f;
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

constexpr size_t kMaxConsoleLine = 512;  // longer lines are cut (they are never a heartbeat)

}  // namespace

nlohmann::json Node::Local::to_json() const {
  nlohmann::json j = {{"name", spec.name},
                      {"state", state},
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
  for (auto* t : {&starter, &out_reader, &err_reader}) {
    if (!t->joinable()) continue;
    if (t->get_id() == std::this_thread::get_id()) t->detach();  // the starter dropping the last reference
    else t->join();
  }
}

std::shared_ptr<Node::Local> Node::new_local(const VmSpec& spec, const std::string& state) {
  auto l = std::make_shared<Local>();
  l->spec = spec;
  l->state = state;
  l->api = o_.state_dir + "/" + spec.name + ".sock";
  l->console = o_.state_dir + "/" + spec.name + ".console";
  l->log = o_.state_dir + "/" + spec.name + ".log";
  locals_[spec.name] = l;
  return l;
}

// On its own thread: take the VM's leases (at once when the observer has watched them dead or
// free for long enough), open the fence, start the child.
void Node::start_vm(std::shared_ptr<Local> l, std::vector<blockdev::AcquireOptions> prior, const std::string& why) {
  l->starter = std::thread([this, l, prior = std::move(prior), why]() mutable {
    blockdev::use_lease_priority();  // a claim must land within the write window of its read
    const int64_t t0 = unix_ms();
    auto leases = acquire_vm_leases(*l, std::move(prior));
    if (!leases) {
      LOG_INFO("vm %s: not started here: %s", l->spec.name.c_str(), leases.message().c_str());
      forget(l->spec.name);
      return;
    }
    keep_leases(*l, std::move(*leases));
    std::fprintf(stderr, "minihv: node %s: vm %s: leases taken in %lld ms (%s)\n", o_.name.c_str(),
                 l->spec.name.c_str(), static_cast<long long>(unix_ms() - t0), why.c_str());
    Status s = spawn(*l, "");
    if (!s) {  // it cannot run here (e.g. no common CPU baseline): say why, and let go of it
      LOG_ERROR("vm %s: cannot start: %s", l->spec.name.c_str(), s.message().c_str());
      {
        std::lock_guard lock(mu_);
        vm_errors_[l->spec.name] = "cannot start on node " + o_.name + ": " + s.message();
      }
      record_failure(l->spec.name, "cannot start: " + s.message(), l->spec.generation);
      release_vm(*l);
      forget(l->spec.name);
      return;
    }
    if (why == "failover") counters_.failovers++;
    std::lock_guard lock(mu_);
    l->state = "running";
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
    blockdev::Nanos next = vol.clock().now() + std::chrono::milliseconds(50);
    for (size_t i = 0; i < acq.size(); ++i) {
      if (!acq[i] || acq[i]->done()) continue;
      all_done = false;
      if (vol.clock().now() >= due[i]) due[i] = acq[i]->step();
      if (!acq[i]->done()) next = std::min(next, due[i]);
    }
    if (all_done) break;
    if (l.cancel || fenced_) return Status::error("cancelled");
    const blockdev::Nanos wait = next - vol.clock().now();
    if (wait.count() > 0) vol.clock().sleep_for(std::min<blockdev::Nanos>(wait, std::chrono::milliseconds(20)));
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
      // The fence has closed already; the VM must not outlive its lease either.
      LOG_ERROR("vm %s: lease lost (%s): killing it", name.c_str(), why.c_str());
      signal_child(*pid, SIGKILL);
    }));
  std::lock_guard lock(mu_);
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
  std::ofstream(path) << cpuid::to_json(*b, "cluster baseline").dump(1) << "\n";
  return path;
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
  std::vector<std::string> args = {o_.self_exe, "run", "--mem", std::to_string(l.spec.mem_bytes >> 20) + "M",
                                   "--cpus", std::to_string(l.spec.cpus), "--cpu-model", *model,
                                   "--api", l.api, "--fence-fd", "3"};
  if (incoming.empty()) {
    args.insert(args.end(), {"--kernel", l.spec.kernel, "--cmdline", l.spec.cmdline});
    if (!l.spec.initrd.empty()) args.insert(args.end(), {"--initrd", l.spec.initrd});
  } else {
    args.insert(args.end(), {"--incoming", incoming});
  }
  if (!l.spec.disk.empty()) args.insert(args.end(), {"--disk", o_.volume + ":" + l.spec.disk});
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return Status::from_errno("pipe");
  UniqueFd console(::open(l.console.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  UniqueFd log(::open(l.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!console.valid() || !log.valid()) return Status::from_errno("opening " + l.console + " / " + l.log);
  const std::string banner = "# minihv node " + o_.name + ": instance started at unix ms " +
                             std::to_string(unix_ms()) + (incoming.empty() ? "" : " (incoming migration)") + "\n";
  (void)!::write(console.get(), banner.data(), banner.size());
  (void)!::write(log.get(), banner.data(), banner.size());
  const pid_t parent = ::getpid();
  auto argv = argv_of(args);
  const int fence_fd = l.fence->fd();
  const pid_t pid = fork_on_spawner([&] {
    // The child: dies with its node (a VM must never outlive the process renewing its leases),
    // console and log on pipes, the fence as fd 3, default signal mask.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setsid();  // a terminal's Ctrl-C or hang-up is for the node, not its VMs
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (fence_fd == 3) ::fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
    else ::dup2(fence_fd, 3);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    blockdev::use_normal_priority();  // raw syscalls only: async-signal-safe
    ::execv(argv[0], argv.data());
    ::_exit(127);
  });
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    ::close(err[0]);
    ::close(err[1]);
    return Status::from_errno("fork");
  }
  ::close(out[1]);
  ::close(err[1]);
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
  Local* lp = &l;
  if (l.out_reader.joinable()) l.out_reader.join();
  if (l.err_reader.joinable()) l.err_reader.join();
  l.out_reader = std::thread([this, lp, fd = out[0], console = std::move(console)]() mutable {
    blockdev::use_normal_priority();  // (created by a starter thread, which is real-time)
    UniqueFd in(fd);
    std::string partial;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(in.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n <= 0) continue;
      (void)!::write(console.get(), buf, static_cast<size_t>(n));
      partial.append(buf, static_cast<size_t>(n));
      size_t nl;
      std::vector<std::pair<ConsoleFact, std::string>> facts;
      while ((nl = partial.find('\n')) != std::string::npos) {
        const std::string line = partial.substr(0, std::min(nl, kMaxConsoleLine));
        partial.erase(0, nl + 1);
        if (auto f = parse_console_line(line); f.kind != ConsoleFact::kNone) facts.emplace_back(f, line);
      }
      if (partial.size() > kMaxConsoleLine) partial.clear();  // a guest that never ends its line
      if (!facts.empty()) {
        std::lock_guard lock(mu_);
        for (const auto& [f, line] : facts) apply(*lp, f, line);
      }
    }
    int status = 0;
    const pid_t p = lp->pid->load();
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(p), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
    }
    lp->pid->store(-1);  // before the pid is freed: nobody signals a reused pid
    while (::waitpid(p, &status, 0) < 0 && errno == EINTR) {
    }
    {
      std::lock_guard lock(pids_mu_);
      std::erase(pids_, p);
    }
    std::lock_guard lock(mu_);
    lp->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    lp->pid->store(-1);
    cv_.notify_all();
  });
  l.err_reader = std::thread([this, lp, fd = err[0], log = std::move(log)]() mutable {
    blockdev::use_normal_priority();
    UniqueFd in(fd);
    std::string partial;
    char buf[4096];
    ssize_t n;
    static const std::regex listening(R"(waiting for a migrating VM on (\S+))");
    while ((n = ::read(in.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n <= 0) continue;
      (void)!::write(log.get(), buf, static_cast<size_t>(n));
      partial.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = partial.find('\n')) != std::string::npos) {
        const std::string line = partial.substr(0, nl);
        partial.erase(0, nl + 1);
        std::smatch m;
        if (std::regex_search(line, m, listening)) {
          std::lock_guard lock(mu_);
          lp->incoming_address = m[1];
          cv_.notify_all();
        } else if (line.rfind("minihv: error: ", 0) == 0) {
          std::lock_guard lock(mu_);
          lp->error = line.substr(15, 400);
        } else if (line.find("incoming migration complete") != std::string::npos) {
          std::lock_guard lock(mu_);
          lp->migrated_in = true;
          cv_.notify_all();
        }
      }
      if (partial.size() > 4096) partial.clear();
    }
  });
  LOG_INFO("vm %s: pid %d", l.spec.name.c_str(), pid);
  return Status::ok();
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
  if (l.pid->load() > 0) (void)api_call(l.api, {{"cmd", "stop"}}, 3000);
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, kStopGrace, [&] { return l.pid->load() <= 0; })) {
    LOG_WARN("vm %s did not stop within %lld s: killing it", l.spec.name.c_str(),
             static_cast<long long>(kStopGrace.count()));
    signal_child(*l.pid, SIGKILL);
    cv_.wait(lock, [&] { return l.pid->load() <= 0; });
  }
}

// The child has ended (or never ran): give its leases back.
void Node::release_vm(Local& l) {
  std::vector<std::unique_ptr<blockdev::LeaseKeeper>> leases;
  {
    std::lock_guard lock(mu_);
    if (l.fence) l.fence->revoke();
    leases = std::move(l.leases);
  }
  for (auto it = leases.rbegin(); it != leases.rend(); ++it)
    if (Status s = (*it)->release(); !s) LOG_WARN("vm %s: %s", l.spec.name.c_str(), s.message().c_str());
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

// Children that ended: a guest that powered off is stopped for good; a reboot or a crash restarts
// it here (up to kMaxRestarts); a desired stop releases its leases.
void Node::handle_exits() {
  std::vector<std::shared_ptr<Local>> ended;
  std::vector<std::shared_ptr<Local>> unwanted;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, l] : locals_) {
      const VmSpec* spec = config_.vm(name);
      if (l->state == "running" && l->pid->load() > 0 && (!spec || !spec->running)) {
        l->state = "stopping";
        unwanted.push_back(l);
      } else if (l->exit_status && (l->state == "running" || l->state == "stopping")) {
        ended.push_back(l);
      }
    }
  }
  for (auto& l : unwanted) std::thread([this, l] { stop_child(*l); }).detach();
  for (auto& l : ended) {
    const int status = *l->exit_status;
    bool restart = false, powered_off = false, given_up = false;
    std::optional<std::pair<std::string, int64_t>> failure;  // reason, generation
    {
      std::lock_guard lock(mu_);
      const VmSpec* spec = config_.vm(l->spec.name);
      const bool leases_lost = std::any_of(l->leases.begin(), l->leases.end(), [](const auto& k) {
        return k->lease().lost() || !k->validity()->may_write();
      });
      if (leases_lost) {
        // Not ours to run any more: let go, and the cluster places it again once its leases
        // have been quiet for the dead timeout (maybe here, maybe elsewhere).
        LOG_WARN("vm %s: its leases were lost; giving it back to the cluster", l->spec.name.c_str());
      } else if (l->state == "running" && spec && spec->running) {
        if (status != 0)
          failure.emplace("ended with status " + std::to_string(status) + (l->error.empty() ? "" : ": " + l->error) +
                              " (log " + l->log + ")",
                          l->spec.generation);
        if (status == 0) {
          powered_off = true;
        } else if (l->restarts < kMaxRestarts) {
          restart = true;
          l->restarts++;
        } else {
          given_up = true;
          vm_errors_[l->spec.name] = "ended with status " + std::to_string(status) + " " +
                                     std::to_string(l->restarts + 1) + " times on node " + o_.name +
                                     (l->error.empty() ? "" : ": " + l->error) + "; given up (see " + l->log + ")";
        }
      }
    }
    if (failure) record_failure(l->spec.name, failure->first, failure->second);
    if (restart) {
      LOG_WARN("vm %s ended with status %d: restarting it here", l->spec.name.c_str(), status);
      Status s = spawn(*l, "");
      if (s) continue;
      std::lock_guard lock(mu_);
      vm_errors_[l->spec.name] = "restart on node " + o_.name + " failed: " + s.message();
    }
    if (powered_off || given_up) {
      const std::string name = l->spec.name;
      const bool wanted = [&] {
        std::lock_guard lock(mu_);
        const VmSpec* spec = config_.vm(name);
        return spec && spec->running;
      }();
      if (wanted)  // the guest powered off, or keeps failing: it stays off until started again
        (void)update_config(*vol_, node_owner(o_.name), [&](ClusterConfig& c) {
          if (VmSpec* v = c.vm(name)) v->running = false;
          return Status::ok();
        });
    }
    release_vm(*l);
    forget(l->spec.name);
  }
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
      if (l->state == "running" && l->pid->load() > 0 && l->up_unix_ms == 0 &&
          now - l->started_unix_ms >= std::chrono::duration_cast<std::chrono::milliseconds>(kNoHeartbeatGrace).count())
        quiet.push_back(l);
  }
  for (auto& l : quiet) {
    const pid_t pid = l->pid->load();
    auto st = api_call(l->api, {{"cmd", "status"}}, kUpProbeTimeoutMs);
    if (!st || st->value("state", "") != "running") continue;
    std::lock_guard lock(mu_);
    if (l->pid->load() == pid && l->up_unix_ms == 0) {
      l->up_unix_ms = unix_ms();
      l->up_by = "control socket";
    }
  }
}

}  // namespace minihv::cluster
