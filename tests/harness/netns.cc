#include "tests/harness/netns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/fd.h"

namespace minihv::test {
namespace {

// Addresses are 10.<base>.<k>.<i+1>: a /24 per network, .0 and .255 reserved.
constexpr unsigned kMaxNodes = 254;
constexpr unsigned kMaxNetworks = 256;
// Like bench/migration.py: the burst must hold a 64 KiB GSO segment or nothing passes.
const std::vector<std::string> kGigabitTbf{"root",  "tbf",   "rate",    "1gbit",
                                            "burst", "256kb", "latency", "20ms"};

constexpr std::chrono::seconds kLinkUpTimeout{10};

std::atomic<bool> g_lab_alive{false};

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Runs argv and throws, naming the command and what it said, unless it exits 0.
void must(const std::vector<std::string>& argv) {
  CmdResult r = run_cmd(argv);
  if (r.status != 0)
    throw std::runtime_error("NetLab: `" + join(argv) + "` failed (exit " + std::to_string(r.status) +
                             "): " + r.err);
}

std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string node_dev(unsigned network) { return "net" + std::to_string(network); }
std::string hub_dev(unsigned node, unsigned network) {
  return "n" + std::to_string(node) + "k" + std::to_string(network);
}

// A veth's carrier reaches its stack and the bridge through the kernel's linkwatch, which batches
// events for up to a second (longer when many labs start at once); until then the link drops what
// it is given. So a link counts as up when `ip -d -o link show` says "state UP" (and, for a bridge
// port, "bridge_slave state forwarding"), and we wait for that with a deadline.
void wait_links_up(const std::string& ns, const std::vector<std::string>& devs, bool bridge_ports) {
  const auto deadline = std::chrono::steady_clock::now() + kLinkUpTimeout;
  for (;;) {
    CmdResult r = run_cmd({"ip", "-n", ns, "-d", "-o", "link", "show"});
    if (r.status != 0)
      throw std::runtime_error("NetLab: `ip -n " + ns + " -d -o link show` failed: " + r.err);
    size_t up = 0;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      // "7: net0@if6: <...> mtu 1500 qdisc noqueue state UP ...": the name ends at '@' or ':'.
      const size_t from = line.find(": ") + 2;
      const std::string name = line.substr(from, line.find_first_of("@:", from) - from);
      if (std::find(devs.begin(), devs.end(), name) == devs.end()) continue;
      if (line.find(" state UP ") != std::string::npos &&
          (!bridge_ports || line.find("bridge_slave state forwarding ") != std::string::npos))
        ++up;
    }
    if (up == devs.size()) return;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("NetLab: links in " + ns + " not up after " +
                               std::to_string(kLinkUpTimeout.count()) + " s:\n" + r.out);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool netns_exists(const std::string& name) {
  std::error_code ec;
  return std::filesystem::exists("/run/netns/" + name, ec);
}

}  // namespace

CmdResult run_cmd(const std::vector<std::string>& argv) {
  CmdResult r;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0) throw std::runtime_error("run_cmd: pipe failed");
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (pipe2(err, O_CLOEXEC) < 0) throw std::runtime_error("run_cmd: pipe failed");
  UniqueFd err_r(err[0]), err_w(err[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), STDERR_FILENO);
  std::vector<std::string> copy = argv;
  std::vector<char*> cargv;
  for (auto& a : copy) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  out_w.reset();
  err_w.reset();
  if (rc != 0) {
    r.status = 127;
    r.err = "cannot run " + argv[0] + ": " + std::strerror(rc);
    return r;
  }

  // Both pipes at once, so a chatty stderr never blocks the child while we wait on stdout.
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // poll ignores negative fds
        --open_fds;
      }
    }
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

NetLab::NetLab(unsigned nodes, unsigned networks, bool gigabit)
    : nodes_(nodes),
      networks_(networks),
      base_(100 + static_cast<unsigned>(getpid()) % 100),
      hub_("mhv" + std::to_string(getpid()) + "h") {
  if (nodes == 0 || nodes > kMaxNodes || networks == 0 || networks > kMaxNetworks)
    throw std::invalid_argument("NetLab: 1.." + std::to_string(kMaxNodes) + " nodes and 1.." +
                                std::to_string(kMaxNetworks) + " networks");
  if (g_lab_alive.exchange(true))
    throw std::logic_error("NetLab: one lab per process at a time (the namespace names carry the pid)");
  try {
    build(gigabit);
  } catch (...) {
    teardown();
    g_lab_alive = false;
    throw;
  }
}

NetLab::~NetLab() {
  teardown();
  g_lab_alive = false;
}

void NetLab::build(bool gigabit) {
  // A namespace already carrying our pid is a leftover of a dead process that had this pid before.
  for (const auto& name : all_namespaces())
    if (netns_exists(name)) must({"ip", "netns", "del", name});

  must({"ip", "netns", "add", hub_});
  for (unsigned k = 0; k < networks_; ++k) {
    const std::string br = "br" + std::to_string(k);
    must({"ip", "-n", hub_, "link", "add", br, "type", "bridge"});  // STP off: ports forward at once
    must({"ip", "-n", hub_, "link", "set", br, "up"});
  }
  for (unsigned i = 0; i < nodes_; ++i) {
    must({"ip", "netns", "add", ns(i)});
    must({"ip", "-n", ns(i), "link", "set", "lo", "up"});
    for (unsigned k = 0; k < networks_; ++k) {
      const std::string hub_end = hub_dev(i, k), node_end = node_dev(k);
      // Created in the hub with its peer placed straight into the node: never in the host's namespace.
      must({"ip", "-n", hub_, "link", "add", hub_end, "type", "veth", "peer", "name", node_end, "netns",
            ns(i)});
      must({"ip", "-n", hub_, "link", "set", hub_end, "master", "br" + std::to_string(k), "up"});
      must({"ip", "-n", ns(i), "addr", "add", addr(i, k) + "/24", "dev", node_end});
      must({"ip", "-n", ns(i), "link", "set", node_end, "up"});
      if (gigabit) {
        must(cat({"tc", "-n", hub_, "qdisc", "add", "dev", hub_end}, kGigabitTbf));
        must(cat({"tc", "-n", ns(i), "qdisc", "add", "dev", node_end}, kGigabitTbf));
      }
    }
  }
  std::vector<std::string> hub_ends;
  std::vector<std::string> node_ends;
  for (unsigned k = 0; k < networks_; ++k) node_ends.push_back(node_dev(k));
  for (unsigned i = 0; i < nodes_; ++i) {
    for (unsigned k = 0; k < networks_; ++k) hub_ends.push_back(hub_dev(i, k));
    wait_links_up(ns(i), node_ends, false);
  }
  wait_links_up(hub_, hub_ends, true);
}

// Deleting a namespace takes its veth ends (and so the pairs), bridges and qdiscs with it. A failure
// here fails the running test but never throws: this also runs while unwinding.
void NetLab::teardown() {
  for (const auto& name : all_namespaces()) {
    if (!netns_exists(name)) continue;
    CmdResult r = run_cmd({"ip", "netns", "del", name});
    if (r.status != 0) ADD_FAILURE() << "NetLab: `ip netns del " << name << "` failed: " << r.err;
  }
}

std::vector<std::string> NetLab::all_namespaces() const {
  std::vector<std::string> names;
  for (unsigned i = 0; i < nodes_; ++i) names.push_back(ns(i));
  names.push_back(hub_);
  return names;
}

std::string NetLab::ns(unsigned node) const {
  return "mhv" + std::to_string(getpid()) + "n" + std::to_string(node);
}

std::string NetLab::addr(unsigned node, unsigned network) const {
  return "10." + std::to_string(base_) + "." + std::to_string(network) + "." + std::to_string(node + 1);
}

void NetLab::set_link(unsigned node, unsigned network, bool up) {
  if (node >= nodes_ || network >= networks_)
    throw std::out_of_range("NetLab::set_link: no node " + std::to_string(node) + " on network " +
                            std::to_string(network));
  const char* state = up ? "up" : "down";
  must({"ip", "-n", hub_, "link", "set", hub_dev(node, network), state});
  must({"ip", "-n", ns(node), "link", "set", node_dev(network), state});
  if (up) {
    wait_links_up(ns(node), {node_dev(network)}, false);
    wait_links_up(hub_, {hub_dev(node, network)}, true);
  }
}

std::vector<std::string> NetLab::exec_prefix(unsigned node) const {
  return {"ip", "netns", "exec", ns(node)};
}

}  // namespace minihv::test
