#include "cluster/live_pids.h"

#include <signal.h>

#include <algorithm>

namespace minihv::cluster {

void LivePids::add(pid_t pid) {
  std::lock_guard lock(mu_);
  pids_.push_back(pid);
}

void LivePids::remove(pid_t pid) {
  {
    std::lock_guard lock(mu_);
    std::erase(pids_, pid);
  }
  gone_.notify_all();
}

void LivePids::kill_all() {
  std::lock_guard lock(mu_);
  for (pid_t p : pids_) ::kill(p, SIGKILL);
}

std::vector<pid_t> LivePids::wait_gone(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  gone_.wait_until(lock, deadline, [&] { return pids_.empty(); });
  return pids_;
}

}  // namespace minihv::cluster
