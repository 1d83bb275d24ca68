#include "tests/harness/cluster_lab.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <thread>

namespace minihv::test {

ClusterLab::ClusterLab(unsigned nodes, const NetLab* lab, uint64_t volume_bytes)
    : lab_(lab), volume_(dir_.file("vol.img")), key_(dir_.file("cluster.key")),
      port_base_(17000 + (getpid() % 500) * 10) {
  auto k = minihv({"cluster", "init-key", "--key", key_});
  if (k.status != 0) throw std::runtime_error("cluster init-key: " + k.err);
  std::filesystem::create_directory(images_dir());
  auto r = minihv({"volume", "format", volume_, "--size", std::to_string(volume_bytes >> 20) + "M", "--cluster", "lab"});
  if (r.status != 0) throw std::runtime_error("volume format: " + r.err);
  nodes_.resize(nodes);
  for (unsigned i = 0; i < nodes; ++i) start_node(i);
}

ClusterLab::~ClusterLab() {
  for (auto& n : nodes_)
    if (n) n->kill(SIGKILL);
  // A failed test shows each node daemon's own account (its log is otherwise lost with the process).
  const bool failed = ::testing::Test::HasFailure();
  for (unsigned i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]) continue;
    const std::string text = nodes_[i]->stderr_text();
    if (failed) std::fprintf(stderr, "---- node %s stderr (last 4 KiB) ----\n%s\n", name(i).c_str(),
                             text.substr(text.size() > 4096 ? text.size() - 4096 : 0).c_str());
    std::ofstream(dir_.file(name(i) + ".stderr")) << text;
  }
}

std::string ClusterLab::address(unsigned i) const {
  if (lab_) return lab_->addr(i, 0) + ":7700";
  return "127.0.0.1:" + std::to_string(port_base_ + static_cast<int>(i));
}

std::vector<std::string> ClusterLab::trust_args() const {
  const std::string guest_dir = std::filesystem::path(testguest_elf()).parent_path().string();
  return {"--key", key_, "--images", guest_dir, "--images", images_dir()};
}

std::vector<std::string> ClusterLab::with_trust(std::vector<std::string> args) const {
  const auto trust = trust_args();
  args.insert(args.end(), trust.begin(), trust.end());
  return args;
}

void ClusterLab::add_node_args(unsigned i, const std::vector<std::string>& args) {
  auto& e = extra_args_[i];
  e.insert(e.end(), args.begin(), args.end());
}

std::vector<std::string> ClusterLab::node_args(unsigned i) const {
  std::vector<std::string> args = {"node", "--name", name(i), "--volume", volume_, "--listen", address(i),
                                   "--state-dir", state_dir(i)};
  const auto trust = trust_args();
  args.insert(args.end(), trust.begin(), trust.end());
  if (auto e = extra_args_.find(i); e != extra_args_.end()) args.insert(args.end(), e->second.begin(), e->second.end());
  if (lab_ && lab_->networks() > 1) {
    std::string nets;
    for (unsigned k = 1; k < lab_->networks(); ++k) nets += (nets.empty() ? "" : ",") + lab_->addr(i, k);
    args.insert(args.end(), {"--migration-networks", nets});
  }
  return args;
}

void ClusterLab::start_node(unsigned i, const std::vector<std::string>& env) {
  nodes_.at(i).reset();  // reaps a previous incarnation
  nodes_.at(i) = lab_ ? std::make_unique<VmProcess>(node_args(i), env, lab_->exec_prefix(i))
                      : std::make_unique<VmProcess>(node_args(i), env);
}

std::optional<int> ClusterLab::wait_node_exit(unsigned i, std::chrono::milliseconds timeout) {
  return nodes_.at(i)->wait_exit(timeout);
}

CmdResult ClusterLab::cli(unsigned via, const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  if (lab_) argv = lab_->exec_prefix(via);
  argv.insert(argv.end(), {minihv_binary(), "cluster", "--node", address(via), "--key", key_});
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cmd(argv);
}

CmdResult ClusterLab::minihv(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {minihv_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cmd(argv);
}

std::optional<nlohmann::json> ClusterLab::status(unsigned via) {
  auto r = cli(via, {"status", "--json"});
  if (r.status != 0) return std::nullopt;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

std::optional<nlohmann::json> ClusterLab::wait_status(unsigned via, std::chrono::milliseconds timeout,
                                                      const std::function<bool(const nlohmann::json&)>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto st = status(via); st && pred(*st)) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return std::nullopt;
}

// Up for the cluster (its lease is alive, seen from `via`) and serving (it answers itself): a node
// takes its lease a moment before it starts listening.
bool ClusterLab::wait_all_up(unsigned via, std::chrono::milliseconds timeout) {
  return wait_status(via, timeout, [&](const nlohmann::json& st) {
           if (st["nodes"].size() != nodes_.size()) return false;
           for (const auto& n : st["nodes"])
             if (n.value("state", "") != "up") return false;
           for (unsigned i = 0; i < nodes_.size(); ++i)
             if (cli(i, {"status", "--json"}).status != 0) return false;
           return true;
         })
      .has_value();
}

CmdResult ClusterLab::add_vm(const std::string& vm, const std::string& cmdline, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"vm", "add", vm, "--kernel", testguest_elf(), "--cmdline", cmdline,
                                   "--mem", "64M", "--start", "--timeout", "60"};
  args.insert(args.end(), extra.begin(), extra.end());
  return cli(0, args);
}

std::string ClusterLab::vm_node(const nlohmann::json& st, const std::string& vm) {
  for (const auto& v : st["vms"])
    if (v.value("name", "") == vm) return v.value("node", "");
  return "";
}

nlohmann::json ClusterLab::vm_local(const nlohmann::json& st, const std::string& vm) {
  const std::string node = vm_node(st, vm);
  if (node.empty() || !st["node_status"].contains(node)) return nlohmann::json::object();
  for (const auto& l : st["node_status"][node].value("local", nlohmann::json::array()))
    if (l.value("name", "") == vm) return l;
  return nlohmann::json::object();
}

std::vector<int> ClusterLab::node_pids(unsigned i) {
  std::vector<int> pids = {nodes_.at(i)->pid()};
  if (auto st = status(i))
    for (const auto& l : (*st)["node_status"][name(i)].value("local", nlohmann::json::array()))
      if (l.value("pid", -1) > 0) pids.push_back(l.value("pid", -1));
  return pids;
}

ConsoleScan scan_consoles(const std::vector<std::string>& files, int cpu) {
  ConsoleScan s;
  const std::regex hb("^HB cpu=" + std::to_string(cpu) + R"( seq=(\d+) .*errs=(\d+))");
  const std::regex rec(R"( rec=(\d+))");
  const std::regex resume(R"(^DISK resume last=(\d+))");
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line;
    std::smatch m;
    while (std::getline(in, line)) {
      if (std::regex_search(line, m, hb)) {
        s.seqs.push_back(std::stol(m[1]));
        s.max_errs = std::max(s.max_errs, std::stol(m[2]));
        if (std::regex_search(line, m, rec)) s.last_rec = std::stol(m[1]);
      } else if (line.rfind("CORRUPT", 0) == 0) {
        s.corrupt++;
      } else if (std::regex_search(line, m, resume)) {
        s.disk_resumes.push_back(std::stol(m[1]));
      }
    }
  }
  return s;
}

}  // namespace minihv::test
