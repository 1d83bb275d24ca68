// `minihv node` (the per-host cluster daemon) and `minihv cluster ...` (the CLI that talks to any node).
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/report.h"
#include "cluster/drill.h"
#include "cluster/node.h"
#include "cluster/rpc.h"
#include "cluster/timings.h"
#include "cluster/validate.h"
#include "common/json_text.h"
#include "common/keys.h"
#include "common/units.h"

namespace minihv::cli {

namespace {

using cluster::node_call;
using Json = nlohmann::json;

// How long the cluster CLI waits for a node's reply: most requests are answered at once, a move
// or a validate take as long as their work, a drain as long as all its moves.
constexpr auto kRequestTimeout = std::chrono::seconds(30);
using cluster::timings::kMoveTimeout;  // the node's, whose move the CLI waits for
constexpr auto kDrainTimeout = std::chrono::minutes(60);
constexpr auto kValidateTimeout = std::chrono::seconds(60);
// A node told to die answers nothing: a short wait, then the drill watches from another node.
constexpr auto kDieTimeout = std::chrono::seconds(2);
// Waiting for a state (a VM up, stopped, failed over): one status request every kStatusPoll.
constexpr auto kStatusPollTimeout = std::chrono::seconds(5);
constexpr auto kStatusPoll = std::chrono::milliseconds(50);
// --timeout's default: how long vm start/stop and a drill wait for the state they want.
constexpr auto kDefaultWait = std::chrono::seconds(60);

}  // namespace

std::string key_path(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* e = std::getenv(kKeyEnv); e && *e) return e;
  return kDefaultKeyFile;
}

Result<std::string> self_exe() {
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return Status::from_errno("/proc/self/exe");
  return std::string(exe, static_cast<size_t>(n));
}

sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return set;
}

Result<keys::Secret> load_cluster_key(const std::string& given) {
  const std::string path = key_path(given);
  auto key = keys::read_key(path);
  if (!key)
    return Status::invalid(key.message() + " (a new cluster gets its key with `minihv cluster init-key --key " + path +
                           "`; every node and every CLI host needs a copy of the same file)");
  return key;
}

namespace {

// ---- minihv node ----

struct NodeCliOptions {
  cluster::NodeOptions node;
  std::string networks;
  std::string key;
};

int run_node(NodeCliOptions& o) {
  auto key = load_cluster_key(o.key);
  if (!key) return fail(key.status());
  o.node.cluster_key = *key;
  if (o.node.images.empty()) o.node.images.push_back(cluster::kDefaultImagesDir);
  if (!o.networks.empty()) {
    std::stringstream ss(o.networks);
    for (std::string ip; std::getline(ss, ip, ',');)
      if (!ip.empty()) o.node.migration_networks.push_back(ip);
  }
  if (o.node.state_dir.empty()) {
    ::mkdir("/run/minihv", 0700);
    o.node.state_dir = "/run/minihv/" + o.node.name;
  }
  auto exe = self_exe();
  if (!exe) return fail(exe.status());
  o.node.self_exe = *exe;
  sigset_t set = block_stop_signals();  // before any thread: a watcher takes them
  // A node's VMs migrate with per-move keys only (Node::move_key), never with a key from the
  // environment they would otherwise inherit (MINIHV_TLS_PSK is for standalone run/migrate).
  ::unsetenv("MINIHV_TLS_PSK");
  auto node = cluster::Node::start(o.node);
  if (!node) {
    std::fprintf(stderr, "minihv: error: %s\n", node.message().c_str());
    return node.status().is_invalid_input() ? kExitUsage : kExitFailure;
  }
  // SIGTERM drains (the VMs move live to other nodes, then it stops); SIGINT and SIGHUP stop it
  // and its VMs, which the cluster restarts elsewhere. SIGKILL is the failover case.
  // The watcher is woken (SIGHUP to it alone) and joined once the node has stopped.
  std::atomic<bool> stopped{false};
  std::thread watcher([&set, &stopped, raw = node->get()] {
    int sig = 0;
    if (sigwait(&set, &sig) == 0 && !stopped)
      raw->stop(sig == SIGTERM ? cluster::StopMode::kDrain : cluster::StopMode::kStop);
  });
  const int status = (*node)->run();
  stopped = true;
  ::pthread_kill(watcher.native_handle(), SIGHUP);
  watcher.join();
  // The node has stopped its VMs (or, fenced, killed them and abandoned its leases): ~Node joins
  // its threads, in order (Node::~Node).
  node->reset();
  return status;
}

// ---- minihv cluster ----

struct ClusterCli {
  std::string node;  // HOST:PORT of any node
  std::string key;   // --key (key_path)
  std::optional<cluster::RpcKey> rpc_key;  // loaded once, before the subcommand runs
  bool json = false;
  std::string vm, to, target, html, nodes;
  bool verify = false, no_wait = false, no_ha = false, start = false, yes = false;
  double timeout_s = std::chrono::duration<double>(kDefaultWait).count();
  cluster::VmSpec spec;
  std::string mem = "256M", preferred;
  std::vector<std::string> nets;  // vm add --net bridge=NAME[,mac=MAC]
  // vm set: only what was given changes.
  std::string set_mem, set_cpu_model;
  unsigned set_cpus = 0;
  CLI::Option* set_preferred = nullptr;
};

std::string node_address(const ClusterCli& c) {
  if (!c.node.empty()) return c.node;
  if (const char* e = std::getenv("MINIHV_NODE")) return e;
  return "127.0.0.1:7700";
}

Result<Json> call(const ClusterCli& c, const Json& req, std::chrono::milliseconds timeout = kRequestTimeout,
                  const std::function<void(const Json&)>& progress = {}) {
  return node_call(*c.rpc_key, node_address(c), req, timeout, progress);
}

std::string age(int64_t unix_ms_then, int64_t now) {
  if (unix_ms_then <= 0) return "-";
  return std::to_string((now - unix_ms_then) / 1000) + " s";
}

int cmd_status(const ClusterCli& c) {
  auto st = call(c, {{"cmd", "cluster_status"}});
  if (!st) return fail(st.status(), c.json);
  if (c.json) {
    std::printf("%s\n", json_text(*st, 2).c_str());
    return kExitOk;
  }
  const int64_t now = st->value("unix_ms", int64_t{0});
  std::printf("cluster %s (volume %s), as node %s sees it\n\n", st->value("cluster", "").c_str(),
              st->value("volume_uuid", "").c_str(), st->value("node", "").c_str());
  std::printf("%-12s %-4s %-8s %-22s %s\n", "NODE", "ID", "STATE", "ADDRESS", "VMS");
  for (const auto& n : (*st)["nodes"]) {
    unsigned vms = 0;
    for (const auto& v : (*st)["vms"]) vms += v.value("node", "") == n.value("name", "");
    std::string state = n.value("state", "");
    if (n.value("paused", false)) state += ",paused";
    std::printf("%-12s %-4u %-8s %-22s %u\n", n.value("name", "").c_str(), n.value("host_id", 0u), state.c_str(),
                n.value("listen", "").c_str(), vms);
  }
  std::printf("\n%-12s %-8s %-12s %-9s %-8s %-8s %-6s %s\n", "VM", "WANTED", "NODE", "STATE", "UPTIME", "BEATS", "ERRS",
              "CPU/MEM/DISK");
  for (const auto& v : (*st)["vms"]) {
    const std::string node = v.value("node", "");
    const Json l = cluster::vm_process(*st, node, v.value("name", ""));
    std::printf("%-12s %-8s %-12s %-9s %-8s %-8llu %-6ld %u/%s/%s\n", v.value("name", "").c_str(),
                v.value("running", false) ? "running" : "stopped", node.empty() ? "-" : node.c_str(),
                l.value("state", node.empty() ? "off" : "?").c_str(), age(l.value("started_unix_ms", int64_t{0}), now).c_str(),
                static_cast<unsigned long long>(l.value("heartbeats", uint64_t{0})), l.value("errs", 0L),
                v.value("cpus", 1u), format_size(v.value("mem_bytes", uint64_t{0})).c_str(),
                v.value("disk", "").empty() ? "-" : v.value("disk", "").c_str());
    if (v.contains("error")) std::printf("  error: %s\n", v.value("error", "").c_str());
    if (v.contains("last_failure")) {
      const Json& f = v["last_failure"];
      std::printf("  last failure: %s (node %s, %s ago)\n", f.value("reason", "").c_str(), f.value("node", "").c_str(),
                  age(f.value("unix_ms", int64_t{0}), now).c_str());
    }
  }
  return kExitOk;
}

// Polls until `pred(status)` holds; the last status is returned either way.
Result<Json> wait_status(const ClusterCli& c, double timeout_s, const std::function<bool(const Json&)>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    auto st = call(c, {{"cmd", "cluster_status"}}, kStatusPollTimeout);
    if (st && pred(*st)) return st;
    if (std::chrono::steady_clock::now() >= deadline)
      return st ? Result<Json>(Status::error("timed out after " + std::to_string(static_cast<int>(timeout_s)) + " s"))
                : st;
    std::this_thread::sleep_for(kStatusPoll);
  }
}

Json find_vm(const Json& st, const std::string& name) {
  for (const auto& v : st["vms"])
    if (v.value("name", "") == name) return v;
  return Json::object();
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, ',');)
    if (!p.empty()) out.push_back(p);
  return out;
}

std::string absolute(const std::string& path) {
  char abs[PATH_MAX];
  return path.empty() ? path : ::realpath(path.c_str(), abs) ? std::string(abs) : path;
}

// `--net bridge=NAME[,mac=MAC]` of `cluster vm add`, as the request's "nics".
Result<Json> nics_request(const std::vector<std::string>& nets) {
  Json nics = Json::array();
  for (const std::string& text : nets) {
    cluster::VmNic nic;
    for (const std::string& part : split_list(text)) {
      const size_t eq = part.find('=');
      const std::string key = part.substr(0, eq), value = eq == std::string::npos ? "" : part.substr(eq + 1);
      if (key == "bridge") nic.bridge = value;
      else if (key == "mac") nic.mac = value;
      else return Status::invalid("--net " + text + ": want bridge=NAME[,mac=MAC]");
    }
    cluster::VmSpec one;
    one.nics.push_back(nic);
    if (nic.bridge.empty()) return Status::invalid("--net " + text + ": bridge=NAME is required");
    MINIHV_TRY(cluster::check_nics(one).context("--net " + text));
    nics.push_back({{"bridge", nic.bridge}, {"mac", nic.mac}});
  }
  return nics;
}

Result<Json> add_request(const ClusterCli& c) {
  auto mem = parse_size(c.mem, 1ull << 20);
  if (!mem) return Status::invalid("--mem: " + mem.message());
  auto nics = nics_request(c.nets);
  if (!nics) return nics.status();
  Json spec = {{"kernel", absolute(c.spec.kernel)}, {"initrd", absolute(c.spec.initrd)}, {"cmdline", c.spec.cmdline},
               {"mem_bytes", *mem},     {"cpus", c.spec.cpus},          {"cpu_model", c.spec.cpu_model},
               {"disk", c.spec.disk},   {"preferred_owners", split_list(c.preferred)}, {"ha", !c.no_ha},
               {"start", c.start},      {"nics", *nics}};
  return Json{{"cmd", "vm_add"}, {"vm", c.vm}, {"spec", spec}};
}

Result<Json> set_request(const ClusterCli& c) {
  Json set = Json::object();
  if (!c.set_mem.empty()) {
    auto mem = parse_size(c.set_mem, 1ull << 20);
    if (!mem) return Status::invalid("--mem: " + mem.message());
    set["mem_bytes"] = *mem;
  }
  if (c.set_cpus) set["cpus"] = c.set_cpus;
  if (!c.set_cpu_model.empty()) set["cpu_model"] = c.set_cpu_model;
  if (c.set_preferred && c.set_preferred->count()) set["preferred_owners"] = split_list(c.preferred);
  if (set.empty()) return Status::invalid("nothing to set: give --mem, --cpus, --cpu-model or --preferred");
  return Json{{"cmd", "vm_set"}, {"vm", c.vm}, {"set", set}};
}

// Until the VM is up in `generation` (its first heartbeat; a guest that prints none: its control
// socket answering "running" a moment after the start) or has failed in it, whichever comes first.
int wait_up(const ClusterCli& c, int64_t generation) {
  auto failure_of = [&](const Json& v) {
    const Json f = v.value("last_failure", Json::object());
    return f.value("generation", int64_t{-1}) >= generation ? f : Json::object();
  };
  auto st = wait_status(c, c.timeout_s, [&](const Json& s) {
    const Json v = find_vm(s, c.vm);
    if (v.contains("error") || !failure_of(v).empty()) return true;
    const Json l = cluster::vm_process(s, v.value("node", ""), c.vm);
    return l.value("state", "") == "running" && l.value("up_unix_ms", int64_t{0}) > 0 &&
           l.value("generation", int64_t{0}) >= generation;
  });
  if (!st) return fail(st.status().context(std::string("waiting for ") + c.vm + " to run"));
  const Json v = find_vm(*st, c.vm);
  const Json l = cluster::vm_process(*st, v.value("node", ""), c.vm);
  const Json f = failure_of(v);
  const int64_t up = l.value("up_unix_ms", int64_t{0});
  if (!f.empty() && (up == 0 || f.value("unix_ms", int64_t{0}) <= up))
    return fail(Status::error(c.vm + ": failed on node " + f.value("node", "") + ": " + f.value("reason", "")));
  if (v.contains("error") && up == 0) return fail(Status::error(c.vm + ": " + v.value("error", "")));
  std::printf("%s: running on %s\n", c.vm.c_str(), v.value("node", "").c_str());
  return kExitOk;
}

int cmd_vm_edit(const ClusterCli& c, const std::string& cmd) {
  Result<Json> req = cmd == "vm_add"   ? add_request(c)
                     : cmd == "vm_set" ? set_request(c)
                                       : Result<Json>(Json{{"cmd", cmd}, {"vm", c.vm}});
  if (!req) return fail(req.status());
  auto r = call(c, *req);
  if (!r) return fail(r.status());
  const bool wants_run = cmd == "vm_start" || (cmd == "vm_add" && c.start);
  if (c.no_wait || !(wants_run || cmd == "vm_stop")) {
    std::printf("%s: done\n", c.vm.c_str());
    return kExitOk;
  }
  if (wants_run) return wait_up(c, r->value("generation", int64_t{0}));
  auto st = wait_status(c, c.timeout_s, [&](const Json& s) { return find_vm(s, c.vm).value("node", "").empty(); });
  if (!st) return fail(st.status().context(std::string("waiting for ") + c.vm + " to stop"));
  std::printf("%s: stopped\n", c.vm.c_str());
  return kExitOk;
}

void print_move_progress(const Json& p) {
  if (p.value("event", "") == "moving")
    std::fprintf(stderr, "moving %s to %s\n", p.value("vm", "").c_str(), p.value("to", "").c_str());
  else if (p.contains("round") && isatty(STDERR_FILENO))
    std::fprintf(stderr, "\r  round %-3u remaining %10s  expected downtime %5llu ms   ", p.value("round", 0u),
                 format_size(p.value("remaining_bytes", uint64_t{0})).c_str(),
                 static_cast<unsigned long long>(p.value("expected_downtime_ms", uint64_t{0})));
}

void print_move(const Json& r) {
  const Json& m = r.value("migration", Json::object());
  std::printf("%s: %s -> %s in %lld ms (downtime %llu ms, %u rounds, %s sent), leases handed over in %lld ms\n",
              r.value("vm", "").c_str(), r.value("from", "").c_str(), r.value("to", "").c_str(),
              static_cast<long long>(r.value("total_ms", int64_t{0})),
              static_cast<unsigned long long>(m.value("downtime_ms", uint64_t{0})), m.value("rounds", 0u),
              format_size(m.value("bytes_sent", uint64_t{0})).c_str(), static_cast<long long>(r.value("handoff_ms", int64_t{-1})));
}

int cmd_move(const ClusterCli& c) {
  auto r = call(c, {{"cmd", "move"}, {"vm", c.vm}, {"to", c.to}, {"verify", c.verify}}, kMoveTimeout,
                print_move_progress);
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  if (!r) return fail(r.status(), c.json);
  if (c.json) std::printf("%s\n", json_text(*r).c_str());
  else print_move(*r);
  return kExitOk;
}

int cmd_drain(const ClusterCli& c) {
  auto r = node_call(*c.rpc_key, node_address(c), {{"cmd", "drain"}, {"node", c.target}, {"verify", c.verify}},
                     kDrainTimeout, print_move_progress);
  if (!r) return fail(r.status(), c.json);
  if (c.json) {
    std::printf("%s\n", json_text(*r).c_str());
  } else {
    for (const auto& m : (*r)["moved"])
      std::printf("%s -> %s (%lld ms)\n", m.value("vm", "").c_str(), m.value("to", "").c_str(),
                  static_cast<long long>(m.value("total_ms", int64_t{0})));
    std::printf("node %s drained and paused (minihv cluster resume %s)\n", c.target.c_str(), c.target.c_str());
  }
  return kExitOk;
}

int cmd_validate(const ClusterCli& c) {
  Json req = {{"cmd", "validate"}};
  if (!c.nodes.empty()) {
    req["nodes"] = Json::array();
    std::stringstream ss(c.nodes);
    for (std::string a; std::getline(ss, a, ',');)
      if (!a.empty()) req["nodes"].push_back(a);
  }
  auto r = call(c, req, kValidateTimeout);
  if (!r) return fail(r.status(), c.json);
  const Json& report = (*r)["report"];
  if (!c.html.empty()) {
    std::ofstream f(c.html);
    f << cluster::render_html(report);
    if (!f) return fail(Status::error("cannot write " + c.html), c.json);
  }
  if (c.json) std::printf("%s\n", json_text(report, 2).c_str());
  else std::printf("%s", cluster::render_text(report).c_str());
  return report.value("ok", false) ? kExitOk : kExitFailure;
}

// ---- drill ----

// A drill kills a node for real: on a terminal it asks first; a script says --yes.
Status confirm_drill(const ClusterCli& c, size_t vms) {
  if (c.yes) return Status::ok();
  const std::string what = "kill node " + c.target + " and its " + std::to_string(vms) + " VM process(es)";
  if (!isatty(STDIN_FILENO))
    return Status::invalid("drill would " + what + ": pass --yes to confirm (stdin is not a terminal)");
  std::fprintf(stderr, "%s now? [y/N] ", what.c_str());
  std::fflush(stderr);
  std::string answer;
  std::getline(std::cin, answer);
  if (answer == "y" || answer == "Y" || answer == "yes") return Status::ok();
  return Status::error("drill cancelled: node " + c.target + " was not killed");
}

void print_drill_vm(const Json& v) {
  std::printf("  %s: on %s: leases %lld ms, process %lld ms, first heartbeat %lld ms; errs=%ld corrupt=%ld",
              v.value("vm", "").c_str(), v.value("node", "-").c_str(), static_cast<long long>(v.value("leased_ms", int64_t{-1})),
              static_cast<long long>(v.value("started_ms", int64_t{-1})),
              static_cast<long long>(v.value("first_heartbeat_ms", int64_t{-1})), v.value("errs", -1L),
              v.value("corrupt", -1L));
  if (v.value("last_acknowledged", -1L) >= 0 || v.value("disk_resume", -1L) >= 0)
    std::printf("; disk resumed at record %ld (last acknowledged %ld)", v.value("disk_resume", -1L),
                v.value("last_acknowledged", -1L));
  std::printf(": %s\n", v.value("ok", false) ? "OK" : "FAILED");
}

void print_drill(const ClusterCli& c, const Json& report) {
  if (c.json) {
    std::printf("%s\n", json_text(report).c_str());
    return;
  }
  std::printf("drill: killed node %s (%zu VM(s)); declared dead after %lld ms\n", c.target.c_str(),
              report["vms"].size(), static_cast<long long>(report.value("detected_ms", int64_t{-1})));
  for (const auto& v : report["vms"]) print_drill_vm(v);
  if (report.contains("error")) std::printf("  error: %s\n", report.value("error", "").c_str());
  std::printf("verdict: %s\n", report.value("ok", false) ? "PASS" : "FAIL");
}

// What to kill, what must come back and pass or fail are cluster/drill.h's; here: ask, kill, wait, print.
int cmd_drill(const ClusterCli& c) {
  auto st = call(c, {{"cmd", "cluster_status"}});
  if (!st) return fail(st.status(), c.json);
  auto plan = cluster::plan_drill(*st, c.target);
  if (!plan) return fail(plan.status(), c.json);
  if (Status ok = confirm_drill(c, plan->vms.size()); !ok) return fail(ok, c.json);
  ClusterCli watcher = c;
  watcher.node = plan->observer_address;
  const int64_t t0 = cluster::unix_ms();
  (void)node_call(*c.rpc_key, plan->victim_address, {{"cmd", "die"}}, kDieTimeout);  // no reply: it is gone
  auto after = wait_status(watcher, c.timeout_s, [&](const Json& s) { return cluster::drill_settled(s, *plan, t0); });
  const Json report = cluster::drill_verdict(after ? *after : Json::object(), *plan, t0,
                                             after ? Status::ok() : after.status());
  print_drill(c, report);
  return report.value("ok", false) ? kExitOk : kExitFailure;
}

}  // namespace

namespace {

using ClusterCliPtr = std::shared_ptr<ClusterCli>;

Command add_node_command(CLI::App& app) {
  auto no = std::make_shared<NodeCliOptions>();
  CLI::App* node = app.add_subcommand("node", "Run this host's cluster daemon (node lease, VMs, failover; SIGTERM drains it live, then it stops)");
  node->add_option("--name", no->node.name, "This node's name in the cluster")->required();
  node->add_option("--volume", no->node.volume, "The shared volume (minihv volume format)")->required();
  node->add_option("--listen", no->node.listen, "HOST:PORT for the cluster CLI and the other nodes")->required();
  node->add_option("--migration-networks", no->networks, "This node's addresses for live migration, preferred first (A,B,...)");
  node->add_option("--state-dir", no->node.state_dir, "VM consoles, logs and sockets (default /run/minihv/NAME)");
  node->add_option("--watchdog", no->node.watchdog,
                   "A watchdog device to arm (e.g. /dev/watchdog; softdog gives one): the host resets if the node stops "
                   "renewing its lease, or is fenced with a VM it cannot prove gone (docs/security.md)");
  node->add_option("--vm-user", no->node.vm_user,
                   "Run VM processes as this user (NAME or UID:GID, not root): /dev/kvm must be open to it through "
                   "a group; the node makes its VMs' taps for it (docs/security.md)");
  node->add_option("--metrics", no->node.metrics, "HOST:PORT to serve Prometheus metrics on (GET /metrics, plain HTTP)");
  node->add_option("--key", no->key, std::string("The cluster key file (default $") + kKeyEnv + ", else " +
                                         kDefaultKeyFile + "; minihv cluster init-key)");
  node->add_option("--images", no->node.images,
                   std::string("A directory VMs' kernels and initrds may come from (repeatable; default ") +
                       cluster::kDefaultImagesDir + ")");
  return {node, [no] { return run_node(*no); }};
}

// Every subcommand but init-key talks to a node: with the node-RPC key of the cluster key.
std::function<int()> with_key(const ClusterCliPtr& c, std::function<int()> run) {
  return [c, run = std::move(run)] {
    auto key = load_cluster_key(c->key);
    if (!key) return fail(key.status(), c->json);
    auto rpc = cluster::node_rpc_key(*key);
    if (!rpc) return fail(rpc.status(), c->json);
    c->rpc_key = std::move(*rpc);
    return run();
  };
}

int cmd_init_key(const ClusterCli& c) {
  const std::string path = key_path(c.key);
  auto key = keys::write_new_key(path);
  if (!key) return fail(key.status());
  std::printf("wrote a new cluster key to %s (mode 0600)\n"
              "copy it to every node and every host that runs `minihv cluster`, at the same path or given by\n"
              "--key / $%s, readable only by the user that runs minihv; never put it on the shared volume\n",
              path.c_str(), kKeyEnv);
  return kExitOk;
}

Command add_init_key_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* init = cl->add_subcommand("init-key", "Create a new cluster key file (0600) to copy to every node");
  return {init, [c] { return cmd_init_key(*c); }};
}

void add_json_flag(CLI::App* a, ClusterCli& c) { a->add_flag("--json", c.json, "Print JSON"); }

Command add_status_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* status = cl->add_subcommand("status", "Nodes and VMs, where each runs, heartbeats");
  add_json_flag(status, *c);
  return {status, [c] { return cmd_status(*c); }};
}

Command add_vm_add_command(CLI::App* vm, const ClusterCliPtr& c) {
  CLI::App* add = vm->add_subcommand("add", "Add a VM to the cluster");
  add->add_option("name", c->vm, "VM name")->required();
  add->add_option("--kernel", c->spec.kernel, "Kernel (the same path on every node)")->required();
  add->add_option("--initrd", c->spec.initrd, "Initial ramdisk");
  add->add_option("--cmdline", c->spec.cmdline, "Kernel command line");
  add->add_option("--mem", c->mem, "Guest RAM")->capture_default_str();
  add->add_option("--cpus", c->spec.cpus, "vCPUs")->capture_default_str();
  add->add_option("--cpu-model", c->spec.cpu_model, "baseline (the nodes' common CPU), host, compat, x86-64-v1..v4 or a profile")
      ->capture_default_str();
  add->add_option("--disk", c->spec.disk, "A disk of the cluster's volume (minihv volume disk create)");
  add->add_option("--net", c->nets,
                  "A NIC on a bridge every node has: bridge=NAME[,mac=MAC] (repeatable; without mac= the cluster "
                  "picks one, kept across failover and moves)");
  add->add_option("--preferred", c->preferred, "Preferred owner nodes, in order (A,B,...)");
  add->add_flag("--no-ha", c->no_ha, "Do not restart it elsewhere when its node dies");
  add->add_flag("--start", c->start, "Start it now");
  add->add_flag("--no-wait", c->no_wait, "With --start: do not wait until it runs");
  add->add_option("--timeout", c->timeout_s, "Seconds to wait for it to run")->capture_default_str();
  return {add, [c] { return cmd_vm_edit(*c, "vm_add"); }};
}

Command add_vm_set_command(CLI::App* vm, const ClusterCliPtr& c) {
  CLI::App* set = vm->add_subcommand("set", "Change a stopped VM's memory, vCPUs, CPU model or preferred owners");
  set->add_option("name", c->vm, "VM name")->required();
  set->add_option("--mem", c->set_mem, "Guest RAM");
  set->add_option("--cpus", c->set_cpus, "vCPUs");
  set->add_option("--cpu-model", c->set_cpu_model, "baseline, host, compat, x86-64-v1..v4 or a profile");
  c->set_preferred = set->add_option("--preferred", c->preferred, "Preferred owner nodes, in order (A,B,...; \"\" for none)");
  return {set, [c] { return cmd_vm_edit(*c, "vm_set"); }};
}

void add_vm_commands(CLI::App* cl, const ClusterCliPtr& c, std::vector<Command>& out) {
  CLI::App* vm = cl->add_subcommand("vm", "Add, change, remove, start or stop a VM");
  vm->require_subcommand(1);
  out.push_back(add_vm_add_command(vm, c));
  out.push_back(add_vm_set_command(vm, c));
  for (auto [verb, cmd, what] : {std::tuple{"rm", "vm_rm", "Remove a VM that runs nowhere"},
                                 std::tuple{"start", "vm_start", "Start a VM (and wait for its first heartbeat or failure)"},
                                 std::tuple{"stop", "vm_stop", "Stop a VM (and wait until it has stopped)"}}) {
    CLI::App* a = vm->add_subcommand(verb, what);
    a->add_option("name", c->vm, "VM name")->required();
    a->add_flag("--no-wait", c->no_wait, "Return at once");
    a->add_option("--timeout", c->timeout_s, "Seconds to wait")->capture_default_str();
    out.push_back({a, [c, cmd = std::string(cmd)] { return cmd_vm_edit(*c, cmd); }});
  }
}

// A request about one node (c.target) that answers "done": node rm, resume.
int cmd_node_request(const ClusterCli& c, const char* cmd, const char* done) {
  auto r = call(c, {{"cmd", cmd}, {"node", c.target}});
  if (!r) return fail(r.status());
  std::printf("node %s %s\n", c.target.c_str(), done);
  return kExitOk;
}

Command add_node_rm_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* nodes = cl->add_subcommand("node", "Remove a node that is gone");
  nodes->require_subcommand(1);
  CLI::App* node_rm = nodes->add_subcommand("rm", "Remove a node whose node lease is dead and that holds no VM's lease");
  node_rm->add_option("name", c->target, "Node name")->required();
  return {node_rm, [c] { return cmd_node_request(*c, "node_rm", "removed"); }};
}

Command add_move_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* move = cl->add_subcommand("move", "Live-migrate a VM to another node (its leases follow)");
  move->add_option("vm", c->vm, "VM name")->required();
  move->add_option("--to", c->to, "Destination node")->required();
  move->add_flag("--verify", c->verify, "Verify guest memory after the switchover (longer downtime)");
  add_json_flag(move, *c);
  return {move, [c] { return cmd_move(*c); }};
}

Command add_drain_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* drain = cl->add_subcommand("drain", "Live-migrate every VM off a node and pause it");
  drain->add_option("node", c->target, "Node to drain")->required();
  drain->add_flag("--verify", c->verify, "Verify guest memory of each move");
  add_json_flag(drain, *c);
  return {drain, [c] { return cmd_drain(*c); }};
}

Command add_resume_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* resume = cl->add_subcommand("resume", "Let a drained (paused) node take VMs again");
  resume->add_option("node", c->target, "Node")->required();
  return {resume, [c] { return cmd_node_request(*c, "node_resume", "resumed"); }};
}

Command add_drill_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* drill = cl->add_subcommand("drill", "Failover drill: kill a node and time its VMs' restart elsewhere");
  drill->add_option("--kill", c->target, "Node to kill (its daemon and every VM process, at once)")->required();
  drill->add_option("--timeout", c->timeout_s, "Seconds to wait for the VMs to run again")->capture_default_str();
  drill->add_flag("--yes,-y", c->yes, "Do not ask for confirmation (required when stdin is not a terminal)");
  add_json_flag(drill, *c);
  return {drill, [c] { return cmd_drill(*c); }};
}

Command add_validate_command(CLI::App* cl, const ClusterCliPtr& c) {
  CLI::App* validate = cl->add_subcommand("validate", "Check every node: KVM, CPUs, volume, networks, clocks, memory");
  validate->add_option("--nodes", c->nodes, "Probe these HOST:PORT addresses instead of the configured nodes");
  validate->add_option("--html", c->html, "Also write the report as one HTML page to FILE");
  add_json_flag(validate, *c);
  return {validate, [c] { return cmd_validate(*c); }};
}

}  // namespace

std::vector<Command> add_cluster_commands(CLI::App& app) {
  std::vector<Command> out;
  out.push_back(add_node_command(app));
  auto c = std::make_shared<ClusterCli>();
  CLI::App* cl = app.add_subcommand("cluster", "Manage the cluster through any of its nodes");
  cl->add_option("--node", c->node, "HOST:PORT of any node (default $MINIHV_NODE, else 127.0.0.1:7700)");
  cl->add_option("--key", c->key, std::string("The cluster key file (default $") + kKeyEnv + ", else " +
                                      kDefaultKeyFile + ")");
  cl->require_subcommand(1);
  const size_t first = out.size();
  out.push_back(add_status_command(cl, c));
  add_vm_commands(cl, c, out);
  out.push_back(add_node_rm_command(cl, c));
  out.push_back(add_move_command(cl, c));
  out.push_back(add_drain_command(cl, c));
  out.push_back(add_resume_command(cl, c));
  out.push_back(add_drill_command(cl, c));
  out.push_back(add_validate_command(cl, c));
  for (size_t i = first; i < out.size(); ++i) out[i].run = with_key(c, std::move(out[i].run));
  out.push_back(add_init_key_command(cl, c));
  return out;
}

}  // namespace minihv::cli
