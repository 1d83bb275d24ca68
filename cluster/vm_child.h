// cluster/vm_child.h — one VM process of a node (`minihv run`), from fork to reaping.
//
// Owns: the child's argv and every fd (its stdout and stderr pipes, the console and log files they
// are copied to, /dev/null as its stdin), three threads — the console reader (which also reaps the
// child), the log copier, and the events reader (the child's control socket, "events" stream,
// vmm/events.h) — and its pid cell. It reports what the child does as typed ChildEvents, in order,
// ending with exactly one kEnded.
// Must not know: leases, phases, what the node does about an event (the OnEvent callback's).
//
// Threading: OnEvent runs on the child's reader threads (never two at once for one child, never
// after kEnded); it may lock the node but must not destroy this VmChild. ~VmChild kills the child
// if it still runs and joins every thread, so it must not be called with a lock OnEvent takes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/child_output.h"
#include "cluster/vm_user.h"
#include "common/capped_file.h"
#include "common/fd.h"
#include "common/status.h"

namespace minihv::cluster {

struct ChildEvent {
  enum class Kind {
    kConsole,    // a console line the node acts on: `console` says which (child_output.h)
    kListening,  // an incoming child waits for its source on `text`
    kIncoming,   // an incoming migration's progress (`progress`)
    kArrived,    // the incoming VM is whole in the child
    kRunning,    // the guest runs
    kExiting,    // the child has ended and `pid` is about to be freed
    kEnded,      // the last event: `exit_status`, and the child's own reason in `why`/`text`
  };
  explicit ChildEvent(Kind k) : kind(k) {}
  Kind kind;
  ConsoleFact console;
  std::string text;  // kConsole: the line; kListening: the address; kEnded: the error ("" when none)
  std::string why;   // kEnded: "poweroff", "stopped", "migrated", "reboot", "crash", "error", or ""
  nlohmann::json progress;
  pid_t pid = -1;
  int exit_status = 0;  // kEnded: its exit status, or 128 + the signal that ended it
};

// How a node forks: on a thread that lives as long as the node (PR_SET_PDEATHSIG belongs to the
// forking thread). Runs `in_child` in the child; returns the pid, or -errno.
using Forker = std::function<pid_t(const std::function<void()>& in_child)>;

struct ChildSpec {
  std::vector<std::string> argv;   // argv[0] is the executable's path
  std::string api;                 // the child's control socket (its --api)
  std::string console, log;        // files its stdout and stderr are appended to (capped, rotated)
  std::string banner;              // written to both files first
  int fence_fd = -1;               // passed as fd 3 when >= 0
  int extent_fd = -1;              // passed as fd 4 when >= 0: the VM's disk (blockdev/extent_device.h)
  int deadlines_fd = -1;           // passed as fd 5 when >= 0: its writes' deadlines (blockdev/write_deadlines.h)
  const VmUser* user = nullptr;    // the ids it runs as (node --vm-user); null: the node's
};

class VmChild {
public:
  using OnEvent = std::function<void(const ChildEvent&)>;

  // Forks and execs the child. `pid` is the cell the child's pid is kept in (-1 once it is reaped),
  // shared with whoever must signal it without a lock.
  static Result<std::unique_ptr<VmChild>> spawn(const ChildSpec& spec, const Forker& fork,
                                                std::shared_ptr<std::atomic<pid_t>> pid, OnEvent on_event);
  ~VmChild();
  VmChild(const VmChild&) = delete;
  VmChild& operator=(const VmChild&) = delete;

  pid_t pid() const { return pid_->load(); }

private:
  VmChild(const ChildSpec& spec, std::shared_ptr<std::atomic<pid_t>> pid, OnEvent on_event);
  struct Pipes;
  void start_threads(Pipes pipes);
  void read_console(UniqueFd in, CappedFile sink);
  void read_events();
  bool connect_events(UniqueFd& fd, std::string& early);
  void on_event_line(const std::string& line);
  void emit(const ChildEvent& e);  // one at a time, in order
  void reap(pid_t p);
  void wait_for_disk_io(pid_t p);

  std::string api_;
  UniqueFd disk_;  // a copy of the extent's fd: the child counts as running until the device's I/O is done
  std::shared_ptr<std::atomic<pid_t>> pid_;
  OnEvent on_event_;
  UniqueFd stop_;                  // eventfd: ~VmChild ends the events reader
  std::atomic<bool> exited_{false};  // the child's stdout closed: it will never answer
  std::mutex emit_mu_;
  std::mutex ended_mu_;
  std::string ended_why_, ended_error_;  // from its "ended" event
  std::thread console_reader_, log_copier_, events_reader_;
};

}  // namespace minihv::cluster
