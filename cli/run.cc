// `minihv run`: boot one guest in this process, console on stdout, until the guest or the user ends it.
#include <signal.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/daily.h"
#include "cli/run_control.h"
#include "cli/terminal.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/net.h"
#include "common/sandbox.h"
#include "common/units.h"
#include "migrate/migration.h"
#include "vmm/devices/disk_spec.h"
#include "vmm/devices/net_spec.h"
#include "vmm/api.h"
#include "vmm/control.h"
#include "vmm/events.h"
#include "vmm/fence_watch.h"
#include "vmm/registry.h"
#include "vmm/vm.h"

namespace minihv::cli {

namespace {

struct RunOptions {
  VmConfig vm;
  std::string name;      // for `minihv ps`; default: the kernel file's name
  std::string mem = "512M";
  std::string console_max;  // --console's cap as typed ("" : the default)
  std::string api;
  std::string incoming;  // HOST:PORT: wait for a migrating VM instead of booting a kernel
  std::string tls_psk;   // --incoming: the key file (default: $MINIHV_TLS_PSK)
  bool insecure = false; // --incoming: plain TCP
  std::optional<tls::Psk> psk;  // from them, once checked
  int fence_fd = -1;     // set by a cluster node: its lease on this VM (blockdev/fence.h)
  int extent_fd = -1;    // set by a cluster node: the VM's volume disk as a device of its own
  int deadlines_fd = -1; // set by a cluster node: where its disk's writes in flight are shown
  bool no_sandbox = false;  // --no-sandbox: no seccomp lists (for a host whose calls we do not know)
  // The size options as parsed: an --incoming VM takes from the source those not given.
  const CLI::Option* mem_opt = nullptr;
  const CLI::Option* cpus_opt = nullptr;
  const CLI::Option* cpu_model_opt = nullptr;
};

bool given(const CLI::Option* opt) { return opt && opt->count() > 0; }

// SIGINT/SIGTERM/SIGHUP stop the VM cleanly: a thread waits for them so no handler runs in a vCPU.
class StopSignals {
public:
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGHUP);
    sigaddset(&set_, SIGUSR2);  // only ever sent by ~StopSignals to end the watcher
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // before any thread exists: all inherit it
  }
  void watch(std::function<void()> stop) {
    thread_ = std::thread([this, stop = std::move(stop)] {
      int sig = 0;
      while (sigwait(&set_, &sig) == 0) {
        if (sig == SIGUSR2) return;  // our own wake-up at shutdown
        LOG_INFO("signal %d: stopping the VM", sig);
        stop();
      }
    });
  }
  // Ends the watcher; call before the VM it watches goes away.
  void stop() {
    if (thread_.joinable()) {
      pthread_kill(thread_.native_handle(), SIGUSR2);
      thread_.join();
    }
  }
  ~StopSignals() { stop(); }

private:
  sigset_t set_;
  std::thread thread_;
};

// Stops the signal watcher when it goes out of scope: declared after everything the watcher's
// stop function touches, so the watcher never outlives them (on any return).
class WatchScope {
public:
  explicit WatchScope(StopSignals& s) : s_(s) {}
  ~WatchScope() { s_.stop(); }

private:
  StopSignals& s_;
};

// This VM in the host's registry (`minihv ps`); a VM that cannot register runs unlisted.
std::optional<registry::Registration> register_vm(const RunOptions& o, bool incoming) {
  registry::VmRecord r;
  r.name = !o.name.empty()          ? o.name
           : !o.vm.kernel.empty()   ? std::filesystem::path(o.vm.kernel).filename().string()
                                    : "vm-" + std::to_string(getpid());
  r.state = incoming ? "incoming" : "running";
  r.mem_bytes = o.vm.mem_bytes;
  r.cpus = o.vm.cpus;
  std::error_code ec;
  if (!o.api.empty()) r.api = std::filesystem::absolute(o.api, ec).string();
  if (!o.vm.kernel.empty()) r.kernel = std::filesystem::absolute(o.vm.kernel, ec).string();
  auto reg = registry::Registration::create(registry::run_dir(), std::move(r));
  if (!reg) {
    LOG_INFO("not listed by 'minihv ps': %s", reg.message().c_str());
    return std::nullopt;
  }
  return std::move(reg).value();
}

// How this run ends: its errors go to stderr and, with the exit status and the VM's own reason,
// into the control socket's last event ("ended", vmm/events.h), which is what a node reads.
class Ending {
public:
  explicit Ending(VmEvents& events) : events_(events) {}
  // Says `why` on stderr, keeps it for the "ended" event and returns `rc`.
  int fail(int rc, const std::string& why) {
    std::fprintf(stderr, "minihv: error: %s\n", why.c_str());
    why_ = "error";
    error_ = why;
    return rc;
  }
  int stopped() {
    why_ = "stopped";
    return kExitOk;
  }
  // The VM ran and returned `rc`: its own reason.
  int ran(const Vm& vm, int rc) {
    const auto [why, message] = vm.ending();
    why_ = to_string(why);
    if (why == VmEnd::kError || why == VmEnd::kGuestCrash || why == VmEnd::kReboot) error_ = message;
    return rc;
  }
  void finish(int rc) { events_.finish({{"event", "ended"}, {"exit", rc}, {"why", why_}, {"error", error_}}); }

private:
  VmEvents& events_;
  std::string why_ = "error", error_;
};

// Waits for the migrating VM and takes it over. Returns -1 when it runs here now, else the exit
// status (0 when a stop ended the wait).
int receive(Vm& vm, const net::Endpoint& where, const std::optional<tls::Psk>& psk, IncomingWait& wait,
            std::unique_ptr<migrate::CommitWitness>& witness, VmEvents& events, Ending& ending) {
  migrate::DestinationOptions options;
  options.listen = where;
  options.cancel_fd = wait.cancel_fd();
  options.psk = psk;
  std::string channel;  // which TLS carried the streams, from the "connected" event
  auto st = migrate::migrate_in(vm, options, [&wait, &events, &channel](const nlohmann::json& p) {
    wait.on_progress(p);
    if (p.value("event", "") == "connected")
      channel = p.value("tls", std::string()) + ", handshakes " +
                std::to_string(static_cast<int>(p.value("handshake_ms", 0.0) + 0.5)) + " ms";
    if (p.value("event", "") == "listening") {
      std::fprintf(stderr, "minihv: waiting for a migrating VM on %s\n", p.value("address", "").c_str());
      events.publish({{"event", "listening"}, {"address", p.value("address", "")}});
    } else {
      LOG_INFO("incoming: %s", json_text(p).c_str());
      events.publish({{"event", "incoming"}, {"progress", p}});
    }
  });
  if (!st && wait.cancelled()) {
    std::fprintf(stderr, "minihv: stopped while waiting for a migrating VM\n");
    return ending.stopped();
  }
  if (!st)
    return ending.fail(st.status().is_invalid_input() ? kExitUsage : kExitFailure,
                       "incoming migration failed: " + st.message());
  witness = std::move(st).value();
  // The source releases the disks' leases once it has the ACK (or, when the ACK was lost, once
  // it has asked our witness: up to 10 s + 2 s per target, twice); one that died instead loses
  // them after the volume's dead timeout. kLeaseHandOff outlasts all of these; a source that
  // keeps the leases (it settled a lost ACK by resuming) makes us give up here, never run.
  constexpr auto kLeaseHandOff = std::chrono::seconds(60);
  if (Status lease = vm.acquire_disk_leases(kLeaseHandOff); !lease)
    return ending.fail(kExitFailure, "incoming migration: " + lease.message());
  // Raw images' locks: the source lets go of them right after the ACK. The guest does not wait for
  // them; one still refused after this long is warned about, naming its holder.
  constexpr auto kImageLockHandOff = std::chrono::seconds(3);
  vm.acquire_image_locks(kImageLockHandOff);
  wait.arrived();
  std::fprintf(stderr, "minihv: incoming migration complete (%s): the VM runs here\n", channel.c_str());
  events.publish({{"event", "arrived"}, {"tls", channel}});
  return -1;
}

// A booting VM's node opened the fence before starting us; an incoming one's opens it once the
// source's node has let go of the VM's leases. The node bounds that wait (it takes the leases as
// soon as their records stand still, gives up on a holder that keeps renewing for 30 s, and kills
// us when it gives up); this limit is only a backstop beyond the node's.
constexpr auto kFenceOpenBackstop = std::chrono::seconds(60);

// The advisory CPU-model warning is long and the same every time: once a day per host and user,
// or on every run with -v. `vm status` always carries it (cpu.advisory, cpu.reason).
void warn_if_advisory(const cpuid::GuestCpuid& cpu) {
  if (!cpu.advisory) return;
  if (log_level() < LogLevel::kInfo && !due_today("cpu-model-advisory")) return;
  std::fprintf(stderr, "minihv: %s\n", cpuid::advisory_warning(cpu).c_str());
}

// The test hook MINIHV_TEST_DISK_STALL=MS:MARKER: the first VM process that finds no file MARKER
// makes it, and its volume disk's thread then holds one write MS ms between showing the node its
// deadline and handing it to the kernel (a stalled io-wq). Later processes (the VM restarted) do not.
constexpr const char* kDiskStallEnv = "MINIHV_TEST_DISK_STALL";

std::chrono::milliseconds disk_stall_hook() {
  const char* v = std::getenv(kDiskStallEnv);
  if (!v || !*v) return {};
  const std::string text = v;
  const auto colon = text.find(':');
  const long ms = std::atol(text.substr(0, colon).c_str());
  if (colon == std::string::npos || ms <= 0) return {};
  UniqueFd marker(::open(text.substr(colon + 1).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  return marker.valid() ? std::chrono::milliseconds(ms) : std::chrono::milliseconds(0);
}

// Checks the options that need no VM; fills in what they say. kExitOk when they are good.
int check_options(RunOptions& o, std::optional<net::Endpoint>& incoming) {
  auto mem = parse_size(o.mem, 1ull << 20);
  if (!mem) {
    std::fprintf(stderr, "minihv: error: --mem: %s\n", mem.message().c_str());
    return kExitUsage;
  }
  o.vm.mem_bytes = *mem;
  if (!o.console_max.empty()) {
    auto cap = parse_size(o.console_max);
    if (!cap) {
      std::fprintf(stderr, "minihv: error: --console-max: %s\n", cap.message().c_str());
      return kExitUsage;
    }
    o.vm.console_max = *cap;
  }
  if (!o.incoming.empty()) {
    auto ep = net::parse_endpoint(o.incoming);
    if (!ep) {
      std::fprintf(stderr, "minihv: error: --incoming: %s\n", ep.message().c_str());
      return kExitUsage;
    }
    incoming = *ep;
    auto key = migration_file_key(o.tls_psk, o.insecure);
    if (!key) {
      std::fprintf(stderr, "minihv: error: %s\n", key.message().c_str());
      return kExitUsage;
    }
    if (*key) {
      auto psk = migrate::migration_psk(**key);
      if (!psk) {
        std::fprintf(stderr, "minihv: error: %s\n", psk.message().c_str());
        return kExitFailure;
      }
      o.psk = *psk;
    }
    // 0 and "": the migrating VM's own size and model, from the source's HELLO.
    if (!given(o.mem_opt)) o.vm.mem_bytes = 0;
    if (!given(o.cpus_opt)) o.vm.cpus = 0;
    if (!given(o.cpu_model_opt)) o.vm.cpu_model.clear();
  } else if (o.vm.kernel.empty()) {
    std::fprintf(stderr, "minihv: error: --kernel is required (unless --incoming waits for a migrating VM)\n");
    return kExitUsage;
  } else if (!o.tls_psk.empty() || o.insecure) {
    std::fprintf(stderr, "minihv: error: --tls-psk and --insecure go with --incoming\n");
    return kExitUsage;
  }
  if (o.fence_fd >= 0) {
    auto fence = blockdev::Fence::attach(o.fence_fd);
    if (!fence) {
      std::fprintf(stderr, "minihv: error: %s\n", fence.message().c_str());
      return kExitUsage;
    }
    o.vm.fence = *fence;
  }
  if (o.extent_fd >= 0) {
    if (o.fence_fd < 0) {
      std::fprintf(stderr, "minihv: error: --extent-fd goes with --fence-fd (a cluster node's VM)\n");
      return kExitUsage;
    }
    o.vm.extent_fd = o.extent_fd;
  }
  if (o.deadlines_fd >= 0) {
    if (o.fence_fd < 0) {
      std::fprintf(stderr, "minihv: error: --deadlines-fd goes with --fence-fd (a cluster node's VM)\n");
      return kExitUsage;
    }
    auto page = blockdev::WriteDeadlines::attach(o.deadlines_fd);
    if (!page) {
      std::fprintf(stderr, "minihv: error: %s\n", page.message().c_str());
      return kExitUsage;
    }
    o.vm.write_deadlines = *page;
    o.vm.test_disk_stall = disk_stall_hook();
  }
  return kExitOk;
}

// The test hook MINIHV_TEST_SANDBOX_PROBE=CLASS:CALL (e.g. vcpu:open): once the sandbox is on, a
// thread of that class makes that call, as code a guest took over would. The sandbox must end the
// VMM; where it does not, the line below says so and the VM runs on.
constexpr const char* kSandboxProbeEnv = "MINIHV_TEST_SANDBOX_PROBE";

void sandbox_probe(const std::string& what) {
  const auto colon = what.find(':');
  const std::string cls = what.substr(0, colon), call = colon == std::string::npos ? "" : what.substr(colon + 1);
  std::optional<sandbox::ThreadClass> named;  // the class whose sandbox::name() is `cls`
  for (auto c : {sandbox::ThreadClass::kControl, sandbox::ThreadClass::kVcpu, sandbox::ThreadClass::kDevice,
                 sandbox::ThreadClass::kMigration})
    if (cls == sandbox::name(c)) named = c;
  const std::map<std::string, std::function<long()>> calls = {
      {"open", [] { return static_cast<long>(::open("/etc/hostname", O_RDONLY | O_CLOEXEC)); }},
      {"exec", [] {
         char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
         return static_cast<long>(::execve("/bin/true", argv, environ));
       }},
      {"ptrace", [] { return ::ptrace(PTRACE_ATTACH, 1, nullptr, nullptr); }},
      {"socket", [] { return static_cast<long>(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)); }},
      {"fork", [] { return static_cast<long>(::fork()); }},
      {"tiocsti", [] {
         char c = 'x';  // typed into stderr's terminal, if it were one and the sandbox let it
         return static_cast<long>(::ioctl(STDERR_FILENO, TIOCSTI, &c));
       }}};
  auto f = calls.find(call);
  if (!named || f == calls.end()) {
    std::fprintf(stderr, "minihv: sandbox probe: %s is not CLASS:CALL\n", what.c_str());
    return;
  }
  if (Status st = sandbox::enter(*named); !st.is_ok()) {
    std::fprintf(stderr, "minihv: sandbox probe: %s\n", st.message().c_str());
    return;
  }
  const long rc = f->second();
  std::fprintf(stderr, "minihv: sandbox probe: %s was allowed in a %s thread (it returned %ld)\n", call.c_str(),
               cls.c_str(), rc);
}

// Receives an incoming VM, waits for a cluster VM's fence, then runs the VM until it ends.
int run_here(const RunOptions& o, Vm& vm, const std::optional<net::Endpoint>& incoming, IncomingWait* wait,
             std::optional<registry::Registration>& registration, VmEvents& events, Ending& ending) {
  // An incoming VM's proof of COMMIT, kept for as long as the VM runs (migrate/in_doubt.h).
  std::unique_ptr<migrate::CommitWitness> witness;
  if (incoming) {
    if (int rc = receive(vm, *incoming, o.psk, *wait, witness, events, ending); rc >= 0) return rc;
    if (registration) (void)registration->set_running(vm.configured_mem_bytes(), vm.configured_cpus());
  }
  if (o.vm.fence && !wait_for_fence_open(*o.vm.fence, kFenceOpenBackstop))
    return ending.fail(kExitFailure, "the node never handed this VM its leases");
  // A cluster VM ends the moment its node's leases on it are not current (vmm/fence_watch.h).
  std::optional<FenceWatch> fence_watch;
  if (o.vm.fence) fence_watch.emplace(o.vm.fence, [&vm](VmEnd why, const std::string& message) { vm.end(why, message); });
  // Set-up is over: from here each thread keeps only its class's calls (common/sandbox.h).
  std::unique_ptr<sandbox::Session> sandboxed;
  std::jthread probe;  // the test hook's thread, joined when the VM ended
  if (!o.no_sandbox) {
    auto s = sandbox::Session::enable();
    if (!s) return ending.fail(kExitFailure, s.message() + " (minihv run --no-sandbox runs without the sandbox)");
    sandboxed = std::move(s).value();
    if (const char* p = std::getenv(kSandboxProbeEnv); p && *p) probe = std::jthread([what = std::string(p)] { sandbox_probe(what); });
  }
  warn_if_advisory(vm.guest_cpuid());
  events.publish({{"event", "running"}});
  return ending.ran(vm, vm.run());
}

int run(RunOptions& o) {
  std::optional<net::Endpoint> incoming;
  if (int rc = check_options(o, incoming); rc != kExitOk) return rc;
  // Nothing this process runs from here on may gain privileges (a set-uid program, file
  // capabilities): the VMM execs nothing, and one a guest subverted could not either.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    std::fprintf(stderr, "minihv: error: prctl(PR_SET_NO_NEW_PRIVS): %s\n", std::strerror(errno));
    return kExitFailure;
  }
  StopSignals signals;
  auto vm = incoming ? Vm::create_incoming(o.vm) : Vm::create(o.vm);
  if (!vm) {
    std::fprintf(stderr, "minihv: error: %s\n", vm.message().c_str());
    return vm.status().is_invalid_input() ? kExitUsage : kExitFailure;
  }
  std::unique_ptr<IncomingWait> wait;
  if (incoming) {
    auto w = IncomingWait::create(o.incoming);
    if (!w) {
      std::fprintf(stderr, "minihv: error: %s\n", w.message().c_str());
      return kExitFailure;
    }
    wait = std::move(w).value();
  }
  MigrationControl migration;
  VmEvents events;  // before the socket that streams them
  Ending ending(events);
  // The socket answers from here on: an incoming VM's wait too (status, stop, console, events).
  ApiServer::StreamCommands streams = stream_commands(**vm);
  streams.emplace("events", events.opener());
  VmControl control(ControlledVm::of(**vm), command_names(streams), migration_plugin(**vm, migration, wait.get()));
  std::unique_ptr<ApiServer> api;
  if (!o.api.empty()) {
    auto s = ApiServer::start(o.api, control.handler(), std::move(streams));
    if (!s) {
      std::fprintf(stderr, "minihv: error: --api: %s\n", s.message().c_str());
      return s.status().is_invalid_input() ? kExitUsage : kExitFailure;
    }
    api = std::move(s).value();
  }
  auto registration = register_vm(o, wait != nullptr);
  auto stop = [&] {
    if (wait) wait->cancel();
    (*vm)->stop();
  };
  // On a terminal: raw keys to the guest (Ctrl-C included), Ctrl-] stops the VM. Otherwise stdin
  // is not read at all.
  RawTerminal terminal(STDIN_FILENO);
  std::optional<TerminalInput> keys;
  if (terminal.active()) {
    std::fprintf(stderr, "minihv: the console is this terminal; %s stops the VM\n", kEscapeName);
    keys.emplace(
        STDIN_FILENO, [&](const std::string& k) { (*vm)->console_input(k); },
        [&] {
          std::fprintf(stderr, "\nminihv: %s: stopping the VM\n", kEscapeName);
          stop();
        });
  }
  signals.watch(stop);
  WatchScope watching(signals);
  const int rc = run_here(o, **vm, incoming, wait.get(), registration, events, ending);
  ending.finish(rc);
  return rc;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* run_app = app.add_subcommand("run", "Boot a guest; the console is this terminal");
  run_app->add_option("--kernel", o->vm.kernel, "Kernel: an ELF with a PVH note, or a Linux bzImage");
  run_app->add_option("--name", o->name, "The VM's name in 'minihv ps' (default: the kernel file's name)");
  run_app->add_option("--initrd", o->vm.initrd, "Initial ramdisk (cpio, possibly compressed)");
  run_app->add_option("--cmdline", o->vm.cmdline, "Kernel command line");
  o->mem_opt = run_app
                   ->add_option("--mem", o->mem,
                                "Guest RAM, e.g. 512M or 2G (a bare number is MiB); with --incoming: the source's")
                   ->capture_default_str();
  o->cpus_opt = run_app->add_option("--cpus", o->vm.cpus, "Number of vCPUs; with --incoming: the source's")
                    ->capture_default_str();
  o->cpu_model_opt =
      run_app
          ->add_option("--cpu-model", o->vm.cpu_model,
                       "CPU model: host, compat, x86-64-v1..v4, or a profile .json (minihv cpuid models); with "
                       "--incoming: the source's")
          ->capture_default_str();
  run_app
      ->add_option("--disk", o->vm.disks,
                   "virtio-blk disk: IMAGE or VOLUME:DISK[,on-error=stop|report] (repeatable); a raw IMAGE is locked "
                   "while the VM has it (a second VM on it is refused, naming the first); a read or write the kernel "
                   "fails with ENOSPC, EDQUOT or EIO pauses the VM (stop, the default; `resume` retries it) or fails "
                   "in the guest (report)")
      ->check([](const std::string& v) {
        auto spec = parse_disk_spec(v);
        return spec ? std::string() : spec.message();
      });
  run_app
      ->add_option("--net", o->vm.nets,
                   "virtio-net on a tap: tap=NAME[,mac=MAC][,bridge=NAME][,queues=N] (repeatable); a tap that does not "
                   "exist is created and brought up, with bridge= it joins that bridge; without mac= a random local "
                   "one (a migration keeps the guest's); queues=2..8 gives the guest that many queue pairs on a "
                   "multi_queue tap (default 1)")
      ->check([](const std::string& v) {
        auto spec = parse_nic_spec(v);
        return spec ? std::string() : spec.message();
      });
  auto* console = run_app->add_option("--console", o->vm.console_path, "Write the serial console to FILE, not stdout");
  run_app
      ->add_option("--console-max", o->console_max,
                   "Cap --console FILE at SIZE (default 16M): past it FILE becomes FILE.1 (replacing the last) "
                   "and starts again; 0: no cap")
      ->needs(console);
  run_app->add_option("--api", o->api, "Serve the JSON-lines control socket at PATH");
  run_app->add_option("--incoming", o->incoming,
                      "Wait on HOST:PORT for a VM migrating here: memory, vCPUs and CPU model come from the "
                      "source (given, they must match); give one --disk and --net for each of the source's, in its order");
  run_app->add_option("--tls-psk", o->tls_psk,
                      "With --incoming: key file (64 hex digits, mode 0600) the source holds too: the streams run "
                      "TLS 1.3 with a key derived from it (default: $MINIHV_TLS_PSK)");
  run_app->add_flag("--insecure", o->insecure,
                    "With --incoming: plain TCP, no key: anyone who reaches the port can read or push a VM");
  run_app->add_option("--fence-fd", o->fence_fd, "(set by minihv node) fd of the node's lease fence for this VM")
      ->group("");
  run_app->add_option("--extent-fd", o->extent_fd,
                      "(set by minihv node) fd of this VM's volume disk, a device of its own: the volume is not opened")
      ->group("");
  run_app->add_option("--deadlines-fd", o->deadlines_fd,
                      "(set by minihv node) fd of the page where this VM shows its node the deadline of its disk's "
                      "oldest write in flight")
      ->group("");
  run_app->add_flag("--hugetlb", o->vm.hugetlb, "Back guest RAM with hugetlbfs pages (2 MiB)");
  run_app->add_flag("--no-sandbox", o->no_sandbox,
                    "Run without the seccomp sandbox (each thread's allow-list of system calls, on by default once "
                    "the VM is set up; docs/security.md)");
  run_app
      ->add_option("--dirty-log", o->vm.dirty_log,
                   "How a migration finds changed pages: auto (ring on hardware KVM that offers it, else bitmap), "
                   "bitmap (KVM's dirty bitmap, exact on every KVM), or ring (KVM's per-vCPU dirty ring; "
                   "hardware KVM only)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, DirtyLogMode>{{"auto", DirtyLogMode::kAuto},
                                                                               {"bitmap", DirtyLogMode::kBitmap},
                                                                               {"ring", DirtyLogMode::kRing}}))
      ->default_str("auto");
  return {run_app, [o] { return run(*o); }};
}

}  // namespace minihv::cli
