// tests/harness/cluster_lab.h — a real minihv cluster for tests: a formatted volume file, a cluster
// key (`minihv cluster init-key`), N `minihv node` daemons (on loopback, or each in its own network
// namespace of a NetLab) that boot VMs from the build's guest directory and the lab's images_dir(),
// and the `minihv cluster` CLI run against them as a user would, with the key.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/harness/harness.h"
#include "tests/harness/netns.h"

namespace minihv::test {

class ClusterLab {
public:
  // `lab` null: nodes listen on 127.0.0.1; otherwise node i lives in lab->ns(i), listens on
  // lab->addr(i, 0) and migrates over lab->addr(i, 1..).
  ClusterLab(unsigned nodes, const NetLab* lab = nullptr, uint64_t volume_bytes = 1ull << 30);
  ~ClusterLab();

  const std::string& volume() const { return volume_; }
  const std::string& key() const { return key_; }  // the cluster key file
  // A directory every node allows VMs' kernels and initrds from (besides the build's guest/).
  std::string images_dir() const { return dir_.file("images"); }
  // --key and --images for a `minihv node` started by hand; with_trust(args) appends them.
  std::vector<std::string> trust_args() const;
  std::vector<std::string> with_trust(std::vector<std::string> args) const;
  std::string name(unsigned i) const { return "n" + std::to_string(i); }
  std::string address(unsigned i) const;
  std::string state_dir(unsigned i) const { return dir_.file(name(i)); }
  VmProcess& node(unsigned i) { return *nodes_.at(i); }

  // (Re)starts node i's daemon, with `env` ("NAME=value", e.g. a test hook) added.
  void start_node(unsigned i, const std::vector<std::string>& env = {});
  // Arguments added to node i's command line from its next start on (e.g. --vm-user).
  void add_node_args(unsigned i, const std::vector<std::string>& args);
  // The command line of node i's daemon (`minihv` args), to start another incarnation by hand.
  std::vector<std::string> node_args(unsigned i) const;
  // Waits until node i's daemon has exited (after a kill or a fence); its exit status.
  std::optional<int> wait_node_exit(unsigned i, std::chrono::milliseconds timeout);
  // `minihv cluster --node <node i> args...`, run in node i's namespace.
  CmdResult cli(unsigned via, const std::vector<std::string>& args);
  // `minihv ...` anything else (volume disk create, ...).
  CmdResult minihv(const std::vector<std::string>& args);
  // `cluster status --json` through node `via` (nullopt if it did not answer).
  std::optional<nlohmann::json> status(unsigned via);
  // Polls status through `via` until pred holds; the last status (or nullopt on timeout).
  std::optional<nlohmann::json> wait_status(unsigned via, std::chrono::milliseconds timeout,
                                            const std::function<bool(const nlohmann::json&)>& pred);
  bool wait_all_up(unsigned via, std::chrono::milliseconds timeout);

  // Adds a VM running the test guest with `cmdline` (started, waits until it runs).
  CmdResult add_vm(const std::string& vm, const std::string& cmdline, const std::vector<std::string>& extra = {});

  // Helpers over a status document.
  static std::string vm_node(const nlohmann::json& st, const std::string& vm);
  static nlohmann::json vm_local(const nlohmann::json& st, const std::string& vm);
  // The pids of node i's daemon and of its VM processes (from its own status).
  std::vector<int> node_pids(unsigned i);

private:
  const NetLab* lab_;
  TempDir dir_;
  std::string volume_;
  std::string key_;
  int port_base_;
  std::vector<std::unique_ptr<VmProcess>> nodes_;
  std::map<unsigned, std::vector<std::string>> extra_args_;
};

// Heartbeats of CPU `cpu` in every console file given, in file order: (seq, errs) pairs.
struct ConsoleScan {
  std::vector<long> seqs;
  long max_errs = 0;
  long corrupt = 0;
  long last_rec = -1;
  std::vector<long> disk_resumes;
};
ConsoleScan scan_consoles(const std::vector<std::string>& files, int cpu = 0);

}  // namespace minihv::test
