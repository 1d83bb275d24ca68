// blockdev/write_deadlines.h — a cluster VM's disk writes in flight, as its node sees them.
//
// Owns: one shared page (a memfd the node creates and hands its child as fd 5, mapped read-write
// by both) holding the deadline of the VM's oldest write in the kernel: the fence's `until`
// (blockdev/fence.h) at the moment that write was handed over, in CLOCK_BOOTTIME nanoseconds; 0
// while none is in flight. The VM's disk thread writes it before each submission and after each
// completion; the node reads it on every fence tick and kills a VM whose write is still in the
// kernel past its deadline (cluster/node.cc), long before another node may take the disk over.
// Must not know: leases, VMs, what the node does about a late write.
// What it does not guard against: a VMM taken over by its guest can write 0 here. It is the
// kernel's stalls it catches (an io-wq worker or a device holding a write), not a liar; a liar is
// kept to its own disk by the extent device and, once fenced, by the node's watchdog.
#pragma once

#include <atomic>
#include <memory>

#include "blockdev/clock.h"
#include "common/fd.h"
#include "common/status.h"

namespace minihv::blockdev {

class WriteDeadlines {
public:
  // The node's side: a new page, nothing in flight. Its fd is close-on-exec (the node hands it over).
  static Result<std::shared_ptr<WriteDeadlines>> create();
  // The VM's side: maps the page behind an inherited fd, which it then owns.
  static Result<std::shared_ptr<WriteDeadlines>> attach(int fd);
  ~WriteDeadlines();
  WriteDeadlines(const WriteDeadlines&) = delete;
  WriteDeadlines& operator=(const WriteDeadlines&) = delete;

  int fd() const { return fd_.get(); }
  // The VM's disk thread: the earliest deadline of its writes in the kernel, 0 for none.
  void publish(Nanos oldest) { word()->store(oldest.count(), std::memory_order_release); }
  Nanos oldest() const { return Nanos(word()->load(std::memory_order_acquire)); }
  // Whether a write has been in the kernel past its deadline at `now`.
  bool overdue(Nanos now) const { return oldest().count() != 0 && now >= oldest(); }

private:
  WriteDeadlines(UniqueFd fd, void* page) : fd_(std::move(fd)), page_(page) {}
  std::atomic<int64_t>* word() const { return static_cast<std::atomic<int64_t>*>(page_); }
  UniqueFd fd_;
  void* page_;
};

}  // namespace minihv::blockdev
