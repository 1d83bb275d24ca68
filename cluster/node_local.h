// cluster/node_local.h — (module-internal) what a node keeps about one VM it runs.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blockdev/fence.h"
#include "blockdev/lease_keeper.h"
#include "blockdev/write_deadlines.h"
#include "cluster/config.h"
#include "cluster/node.h"
#include "cluster/vm_child.h"
#include "cluster/vm_phase.h"

namespace minihv::cluster {

// Signals a child by its pid cell, read once (-1 once reaped: never kill(-1, ...)).
inline void signal_child(const std::atomic<pid_t>& pid, int sig) {
  const pid_t p = pid.load();
  if (p > 0) ::kill(p, sig);
}

struct Node::Local {
  VmSpec spec;
  // Its phase and how it changes: cluster/vm_phase.h.
  VmPhase phase = VmPhase::kStarting;
  std::unique_ptr<blockdev::Volume> vol;  // this VM's lease I/O, on its own queue
  std::vector<std::unique_ptr<blockdev::LeaseKeeper>> leases;  // VM lease, then the disk's
  std::shared_ptr<blockdev::Fence> fence;
  // Its instance's disk writes in the kernel (blockdev/write_deadlines.h): a new page per instance.
  std::shared_ptr<blockdev::WriteDeadlines> deadlines;
  blockdev::Nanos late_write_kill{0};  // when a write late past its deadline got this instance killed
  bool late_kill_unconfirmed = false;  // the instance outlived its kill by the grace (said once)
  unsigned late_write_kills = 0;       // instances killed so, in this node's life
  std::shared_ptr<std::atomic<pid_t>> pid = std::make_shared<std::atomic<pid_t>>(-1);
  std::string api, console, log;
  std::vector<std::string> user_taps;  // taps the node made for it (--vm-user), removed with it
  std::string incoming_address;
  std::string move_key_file;  // an incoming VM's: this move's key for its child, gone once it listens
  nlohmann::json incoming_progress;  // the incoming child's last progress event
  bool migrated_in = false;       // the incoming child has the whole VM (it said so)
  // A live move's lease hand-over (node_ops.cc): the nonces this node gave the source and when.
  std::vector<uint64_t> handoff_nonces;
  blockdev::Nanos handoff_asked{0};
  bool handoff_pending = false;   // between handoff_begin and handoff_done
  bool handoff_done = false;

  // From the console (all under Node::mu_).
  int64_t started_unix_ms = 0, leased_unix_ms = 0, first_hb_unix_ms = 0, last_hb_unix_ms = 0;
  // Up: the first heartbeat, or for a guest that prints none, its control socket answering
  // "running" kNoHeartbeatGrace after the start (Node::check_up). `vm start` waits for it.
  int64_t up_unix_ms = 0;
  std::string up_by;  // "heartbeat" | "control socket"
  bool running = false;  // its control socket said the guest runs
  uint64_t heartbeats = 0;
  long errs = 0, corrupt = 0, disk_resume = -1, last_rec = -1;
  std::string last_hb;
  std::optional<int> exit_status;
  unsigned restarts = 0;
  std::string error;

  std::atomic<bool> cancel{false};
  // The process and its reader threads; replaced only by spawn() once the last one has ended.
  // (Its starter and stopper threads: Node::workers_.)
  std::unique_ptr<VmChild> child;

  nlohmann::json to_json() const;
  ~Local();
};

}  // namespace minihv::cluster
