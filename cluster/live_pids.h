// cluster/live_pids.h — a node's VM processes, for the kill that fencing needs and its proof.
//
// Owns: the pids of every child that may still run (added before anyone can reap it, removed when
// it has ended), an instant SIGKILL to all of them from any thread (a lease thread that has just
// lost its lease), and the wait until all of them are gone. A child that is gone has no write left
// in the kernel: it is removed only once its process has ended and its disk device holds none of its
// requests (an ending process does not wait for its io_uring writes: VmChild waits for them), so
// "gone" is what lets a fenced node say none of its VMs can still write.
// Must not know: leases, VMs, what a child runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

namespace minihv::cluster {

class LivePids {
public:
  void add(pid_t pid);
  void remove(pid_t pid);  // the child has ended (before its pid may be reused)
  void kill_all();         // SIGKILL, to every child at once
  // Waits until every child is gone or `deadline` passes; returns those still there.
  std::vector<pid_t> wait_gone(std::chrono::steady_clock::time_point deadline);

private:
  std::mutex mu_;
  std::condition_variable gone_;
  std::vector<pid_t> pids_;
};

}  // namespace minihv::cluster
