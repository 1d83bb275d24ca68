// common/sandbox.h — the VMM's seccomp sandbox: an allow-list of system calls per thread class,
// installed after set-up (libseccomp).
//
// Owns: the four lists, the process's switch (Session), the thread that starts what a narrow
// thread may not (outside()), and the report of a violation.
//
// How it fits together: Session::enable() gives every thread of the process the control list at
// once (TSYNC); a thread made later inherits its maker's filters, and enter() stacks its class's
// list on top. Filters only narrow, so a vCPU thread made by the control thread allows what both
// lists allow. A thread whose list lacks clone, io_uring_setup or openat (vCPU, device) asks
// outside() to run such work on the sandbox's own control-class thread.
//
// A call a list does not allow ends the VMM at once: one line on stderr names the thread class, the
// thread and the call ("minihv: error: sandbox: a vcpu thread (vcpu0) called openat (257), which
// its list does not allow; the VMM ends"), then the process exits with kViolationExit. No core is
// dumped (it would hold the guest's memory).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace minihv::sandbox {

enum class ThreadClass { kControl, kVcpu, kDevice, kMigration };
const char* name(ThreadClass c);

// The exit status of a VMM ended by a violation: 128 + SIGSYS, what a shell shows for a death by
// the signal seccomp raises.
inline constexpr int kViolationExit = 128 + 31;

// The calls `c`'s list allows, by name (for docs and tests; names the kernel lacks are skipped
// when a filter is built).
const std::vector<std::string>& allowed(ThreadClass c);

struct Starter;  // the thread outside() hands work to (sandbox.cc)

// The sandbox of this process, on from enable() until it is destroyed (the filters stay: seccomp
// has no way back; only outside() falls back to running inline).
class Session {
public:
  // After set-up: installs the violation report, gives every thread the control list and starts
  // the outside() thread. Errors name what the kernel refused.
  static Result<std::unique_ptr<Session>> enable();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

private:
  Session() = default;
  std::unique_ptr<Starter> starter_;
};

// True once a Session was enabled in this process.
bool enabled();

// Narrows the calling thread to `c`'s list (on top of what it has). Nothing while the sandbox is
// off, so code that runs both inside a `minihv run` and in tests calls it unconditionally.
Status enter(ThreadClass c);

// Runs `work` on the sandbox's control-class thread and waits for it; inline while no Session is
// on. For what a vCPU or device thread must not do itself: start threads, make rings and eventfds.
void outside(const std::function<void()>& work);

}  // namespace minihv::sandbox
