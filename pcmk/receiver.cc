#include "pcmk/receiver.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "blockdev/disk_attach.h"
#include "cluster/rpc.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/net.h"
#include "vmm/api.h"

namespace minihv::pcmk {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// How long an incoming VMM may take to listen, and to end once asked.
constexpr auto kListenTimeout = std::chrono::seconds(20);
constexpr auto kEndTimeout = std::chrono::seconds(10);
constexpr auto kPoll = std::chrono::milliseconds(20);
// A prepare answers once the VMM listens; a cancel once it has ended.
constexpr auto kCallTimeout = std::chrono::seconds(40);
constexpr int kApiTimeoutMs = 3000;
constexpr const char* kListeningLine = "minihv: waiting for a migrating VM on ";
constexpr size_t kMaxListItems = 16;  // disks or NICs of one VM

// Names become file names in the state directory and `minihv ps` names.
bool valid_name(const std::string& s) {
  static const std::regex re("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
  return std::regex_match(s, re);
}

Result<cluster::RpcKey> receiver_key(const keys::Secret& cluster_key) {
  return cluster::rpc_key(cluster_key, keys::kReceiverRpcLabel);
}

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

std::optional<pid_t> read_pid(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  return static_cast<pid_t>(pid);
}

// The VMM's state as its control socket says ("" when it does not answer).
std::string vm_state(const std::string& sock) {
  auto st = api_call(sock, {{"cmd", "status"}}, kApiTimeoutMs);
  return st ? st->value("state", std::string()) : std::string();
}

bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (alive(pid)) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(kPoll);
  }
  return true;
}

// The last "minihv: error:" line the VMM wrote to its log after `from` (its own words for a refusal).
std::string last_error(const std::string& log, std::streamoff from) {
  std::ifstream in(log);
  in.seekg(from);
  std::string line, error;
  while (std::getline(in, line))
    if (line.find("error:") != std::string::npos) error = line;
  return error.empty() ? "it ended without saying why (see " + log + ")" : error;
}

// Started detached: its own session, stdin /dev/null, stdout and stderr appended to `log`, no
// other fd of ours. The receiver ignores SIGCHLD (the kernel reaps): the child gets it back.
Result<pid_t> spawn(const std::vector<std::string>& argv, const std::string& log) {
  UniqueFd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (out.get() < 0) return Status::from_errno("open " + log);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null.get() < 0) return Status::from_errno("open /dev/null");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return Status::from_errno("fork");
  if (pid == 0) {
    ::setsid();
    ::signal(SIGCHLD, SIG_DFL);
    if (::dup2(null.get(), 0) < 0 || ::dup2(out.get(), 1) < 0 || ::dup2(out.get(), 2) < 0) ::_exit(127);
    ::close_range(3, ~0U, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

std::vector<std::string> run_argv(const std::string& binary, const IncomingRequest& r, const VmFiles& f,
                                  const std::string& host) {
  std::vector<std::string> a{binary, "run", "--name", r.name, "--incoming", host + ":0", "--tls-psk", f.key,
                             "--api", f.sock, "--console", f.console};
  if (!r.mem.empty()) a.insert(a.end(), {"--mem", r.mem});
  if (r.cpus) a.insert(a.end(), {"--cpus", std::to_string(r.cpus)});
  if (!r.cpu_model.empty()) a.insert(a.end(), {"--cpu-model", r.cpu_model});
  for (const auto& d : r.disks) a.insert(a.end(), {"--disk", d});
  for (const auto& n : r.nets) a.insert(a.end(), {"--net", n});
  return a;
}

// Waits for the VMM's "waiting for a migrating VM on HOST:PORT" line in its log (after `from`).
Result<std::string> wait_listening(pid_t pid, const std::string& log, std::streamoff from) {
  const auto end = Clock::now() + kListenTimeout;
  for (;;) {
    std::ifstream in(log);
    in.seekg(from);
    std::string line;
    while (std::getline(in, line))
      if (auto at = line.find(kListeningLine); at != std::string::npos)
        return line.substr(at + std::string(kListeningLine).size());
    if (!alive(pid)) return Status::error("the incoming VMM ended: " + last_error(log, from));
    if (Clock::now() >= end)
      return Status::error("the incoming VMM did not listen within " + std::to_string(kListenTimeout.count()) +
                           " s (see " + log + ")");
    std::this_thread::sleep_for(kPoll);
  }
}

Result<std::vector<std::string>> string_list(const Json& j, const char* field) {
  std::vector<std::string> out;
  if (!j.contains(field)) return out;
  if (!j[field].is_array() || j[field].size() > kMaxListItems)
    return Status::invalid(std::string(field) + " must be a list of at most " + std::to_string(kMaxListItems) +
                           " strings");
  for (const auto& v : j[field]) {
    if (!v.is_string()) return Status::invalid(std::string(field) + " must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

VmFiles VmFiles::in(const std::string& state_dir, const std::string& name) {
  const std::string base = state_dir + "/" + name;
  return {base + ".sock", base + ".pid", base + ".log", base + ".console", base + ".key"};
}

Json IncomingRequest::to_json() const {
  return {{"cmd", "prepare"}, {"name", name}, {"mem", mem},     {"cpus", cpus},
          {"cpu_model", cpu_model}, {"disks", disks}, {"nets", nets}};
}

Result<IncomingRequest> IncomingRequest::from_json(const Json& j) {
  IncomingRequest r;
  r.name = j.value("name", std::string());
  if (!valid_name(r.name)) return Status::invalid("name must be 1-64 of A-Z a-z 0-9 _ . - (not starting with . _ -)");
  if (j.contains("mem") && !j["mem"].is_string()) return Status::invalid("mem must be a string");
  if (j.contains("cpu_model") && !j["cpu_model"].is_string()) return Status::invalid("cpu_model must be a string");
  if (j.contains("cpus") && !j["cpus"].is_number_unsigned()) return Status::invalid("cpus must be a number");
  r.mem = j.value("mem", std::string());
  r.cpu_model = j.value("cpu_model", std::string());
  r.cpus = j.value("cpus", 0u);
  auto disks = string_list(j, "disks");
  if (!disks) return disks.status();
  auto nets = string_list(j, "nets");
  if (!nets) return nets.status();
  r.disks = std::move(*disks);
  r.nets = std::move(*nets);
  // Only volume disks: their leases guard them across the move (a raw file path from a peer
  // would be a file of this host's choosing by someone else).
  for (const auto& d : r.disks)
    if (!blockdev::parse_volume_disk(d)) return Status::invalid("disk " + d + " is not VOLUME:DISK of a minihv volume here");
  for (const auto& n : r.nets)
    if (n.rfind("tap=", 0) != 0) return Status::invalid("net " + n + " must start with tap=");
  return r;
}

Result<std::unique_ptr<Receiver>> Receiver::start(ReceiverOptions o) {
  auto ep = net::parse_endpoint(o.listen);
  if (!ep) return Status::invalid("--listen: " + ep.message());
  if (o.migration_host.empty()) o.migration_host = ep->host;
  if (o.migration_host == "0.0.0.0" || o.migration_host == "::")
    return Status::invalid("--listen on every address: give --migration-address, the address sources reach");
  if (::mkdir(o.state_dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::from_errno("mkdir " + o.state_dir);
  auto key = receiver_key(o.cluster_key);
  if (!key) return key.status();
  ::signal(SIGCHLD, SIG_IGN);  // incoming VMMs are reaped by the kernel; we watch them by pid
  std::unique_ptr<Receiver> r(new Receiver(std::move(o)));
  auto server = cluster::serve_tcp(r->o_.listen, *key, [rp = r.get()](const Json& req, const jsonl::Progress&) {
    return rp->handle(req);
  });
  if (!server) return server.status();
  r->server_ = std::move(*server);
  return r;
}

Receiver::~Receiver() { server_.reset(); }

Json Receiver::handle(const Json& req) {
  const std::string cmd = req.value("cmd", std::string());
  if (cmd == "ping") return {{"ok", true}};
  if (cmd == "prepare") {
    auto r = IncomingRequest::from_json(req);
    if (!r) return cluster::error_reply(r.status());
    auto p = prepare(*r);
    if (!p) return cluster::error_reply(p.status());
    return {{"ok", true}, {"address", p->address}, {"move_id", p->move_id}};
  }
  if (cmd == "cancel") {
    const std::string name = req.value("name", std::string());
    if (!valid_name(name)) return cluster::error_reply(Status::invalid("bad name"));
    Status s = cancel(name);
    return s ? Json{{"ok", true}} : cluster::error_reply(s);
  }
  return cluster::error_reply(Status::invalid("unknown command '" + cmd + "'"));
}

Status Receiver::clear_stale(const std::string& name) {
  const VmFiles f = VmFiles::in(o_.state_dir, name);
  auto pid = read_pid(f.pid);
  if (!pid || !alive(*pid)) return Status::ok();
  if (vm_state(f.sock) != "incoming")
    return Status::error("VM " + name + " already has a VMM on this host (pid " + std::to_string(*pid) +
                         "): it runs here, or its state is unknown");
  LOG_WARN("receiver: an earlier incoming %s (pid %d) never arrived: stopping it", name.c_str(), *pid);
  (void)api_call(f.sock, {{"cmd", "stop"}}, kApiTimeoutMs);
  if (!wait_gone(*pid, kEndTimeout)) {
    ::kill(*pid, SIGKILL);
    if (!wait_gone(*pid, kEndTimeout)) return Status::error("the earlier incoming " + name + " does not end");
  }
  return Status::ok();
}

Result<Prepared> Receiver::prepare(const IncomingRequest& r) {
  std::lock_guard lock(mu_);
  MINIHV_TRY(clear_stale(r.name));
  const VmFiles f = VmFiles::in(o_.state_dir, r.name);
  auto id = keys::random_secret();
  if (!id) return id.status();
  Prepared p;
  p.move_id = keys::to_text(*id).substr(0, 32);
  auto key = move_key(o_.cluster_key, p.move_id);
  if (!key) return key.status();
  ::unlink(f.key.c_str());
  MINIHV_TRY(keys::write_key(f.key, *key));
  struct stat st{};
  const std::streamoff from = ::stat(f.log.c_str(), &st) == 0 ? st.st_size : 0;
  auto pid = spawn(run_argv(o_.binary, r, f, o_.migration_host), f.log);
  if (!pid) return pid.status();
  std::ofstream(f.pid) << *pid << "\n";
  auto address = wait_listening(*pid, f.log, from);
  ::unlink(f.key.c_str());  // read at start: the move's key lives on in the VMM only
  if (!address) {
    ::kill(*pid, SIGKILL);
    return address.status().context("VM " + r.name);
  }
  LOG_INFO("receiver: VM %s waits on %s (pid %d)", r.name.c_str(), address->c_str(), *pid);
  p.address = *address;
  return p;
}

Status Receiver::cancel(const std::string& name) {
  std::lock_guard lock(mu_);
  return clear_stale(name);
}

Result<keys::Secret> move_key(const keys::Secret& cluster_key, const std::string& move_id) {
  return keys::derive(cluster_key, keys::migration_label(move_id));
}

Result<Prepared> prepare_incoming(const keys::Secret& cluster_key, const std::string& receiver,
                                  const IncomingRequest& r) {
  auto key = receiver_key(cluster_key);
  if (!key) return key.status();
  auto reply = cluster::node_call(*key, receiver, r.to_json(), kCallTimeout);
  if (!reply) return reply.status().context("receiver " + receiver);
  Prepared p{reply->value("address", std::string()), reply->value("move_id", std::string())};
  if (p.address.empty() || p.move_id.empty()) return Status::error("receiver " + receiver + ": a reply without address");
  return p;
}

Status cancel_incoming(const keys::Secret& cluster_key, const std::string& receiver, const std::string& name) {
  auto key = receiver_key(cluster_key);
  if (!key) return key.status();
  auto reply = cluster::node_call(*key, receiver, {{"cmd", "cancel"}, {"name", name}}, kCallTimeout);
  return reply ? Status::ok() : reply.status().context("receiver " + receiver);
}

}  // namespace minihv::pcmk
