// blockdev/fence.h — a lease validity held by another process: the cluster node holds a VM's
// leases and renews them; the VM's own process (`minihv run --fence-fd N`) may write only while
// the node says so.
//
// One shared page (a memfd the node passes to its child) holds `until`, in CLOCK_BOOTTIME
// nanoseconds: the same clock in every process of the host, so the child compares it with its
// own clock before every write, exactly as it would a lease of its own. The node moves `until`
// forward after each successful renewal and to 0 to revoke. A node that is frozen or killed stops
// moving it, so its VMs stop writing at the same moment its own lease says it must.
// The page is sealed once the holder has mapped it (F_SEAL_FUTURE_WRITE): the child maps it
// read-only and can neither map it writable nor write(2) it, so an escaped guest cannot open its
// own fence.
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>

#include "blockdev/clock.h"
#include "common/fd.h"
#include "common/status.h"

namespace minihv::blockdev {

class Fence {
public:
  // The holder's side: a new page, closed (until = 0). Its fd is inherited by the child.
  static Result<std::shared_ptr<Fence>> create();
  // The child's side: maps the page behind an inherited fd (which it then owns), read-only; refuses
  // an fd whose page is not sealed.
  static Result<std::shared_ptr<Fence>> attach(int fd);
  ~Fence();
  Fence(const Fence&) = delete;
  Fence& operator=(const Fence&) = delete;

  int fd() const { return fd_.get(); }
  // The holder's side only (the child's mapping is read-only).
  // 0 means "never opened"; a closed fence holds 1 (long past), so the VM's watchdog sees it close.
  void extend_to(Nanos until) { word()->store(std::max<int64_t>(until.count(), 1), std::memory_order_release); }
  void revoke() { word()->store(1, std::memory_order_release); }
  Nanos until() const { return Nanos(word()->load(std::memory_order_acquire)); }
  bool may_write(const Clock& clock) const { return clock.now() < until(); }
  // Whether the holder has ever opened it (an incoming VM waits for this before it runs).
  bool opened() const { return until().count() != 0; }

private:
  Fence(UniqueFd fd, void* page) : fd_(std::move(fd)), page_(page) {}
  std::atomic<int64_t>* word() const { return static_cast<std::atomic<int64_t>*>(page_); }
  UniqueFd fd_;
  void* page_;
};

}  // namespace minihv::blockdev
