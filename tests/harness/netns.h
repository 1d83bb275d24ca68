// tests/harness/netns.h — a small lab network for multi-node tests: one network namespace per node.
//
// Every node gets its own namespace with `lo` up and one veth per network; the other ends sit in a
// hub namespace, one bridge per network, so nodes talk through a real network stack and nothing
// touches the host's own interfaces or addresses. Network k (0 = control, 1.. = migration networks)
// is 10.<base>.<k>.0/24 and node i is 10.<base>.<k>.(i+1) on it; <base> comes from the pid.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tests/harness/harness.h"

namespace minihv::test {

// What a finished command left behind: exit status (128+signal if killed, 127 if it could not be
// started), its stdout and its stderr.
struct CmdResult {
  int status = -1;
  std::string out, err;
};
// Runs argv (argv[0] looked up on PATH, no shell) to the end, stdin from /dev/null.
CmdResult run_cmd(const std::vector<std::string>& argv);

class NetLab {
public:
  // Creates everything; on any failure removes what it made and throws std::runtime_error naming
  // the command and its stderr. `gigabit` shapes both ends of every veth to 1 Gbit/s with a tbf
  // qdisc (as bench/migration.py does). One NetLab per process at a time: the names carry the pid.
  NetLab(unsigned nodes, unsigned networks, bool gigabit = false);
  ~NetLab();  // deletes the namespaces (and with them the veths, bridges and qdiscs)
  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;

  unsigned nodes() const { return nodes_; }
  unsigned networks() const { return networks_; }
  std::string ns(unsigned node) const;                       // "mhv<pid>n<i>"
  std::string addr(unsigned node, unsigned network) const;  // "10.<base>.<k>.<i+1>"
  // Takes node's link on that network down or up (both ends of the veth); "up" returns once the
  // link forwards again.
  void set_link(unsigned node, unsigned network, bool up);
  // argv prefix that runs a command inside node's namespace: {"ip", "netns", "exec", ns(node)}.
  std::vector<std::string> exec_prefix(unsigned node) const;

private:
  void build(bool gigabit);
  void teardown();
  std::vector<std::string> all_namespaces() const;

  unsigned nodes_, networks_, base_;
  std::string hub_;  // the namespace that holds the bridges
};

// `minihv <args...>` inside node's namespace of `lab`: a VmProcess with the lab's exec prefix.
class NsProcess : public VmProcess {
public:
  NsProcess(const NetLab& lab, unsigned node, std::vector<std::string> args,
            std::vector<std::string> env = {})
      : VmProcess(std::move(args), std::move(env), lab.exec_prefix(node)) {}
};

}  // namespace minihv::test
