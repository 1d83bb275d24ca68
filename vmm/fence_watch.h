// vmm/fence_watch.h — a cluster VM runs only while its node's leases on it are current.
//
// Owns: watching the fence a node hands its VM process (blockdev/fence.h) and ending the VM the
// moment the fence says the leases are not current (the node froze, died, or lost the volume),
// before any other node may start it; and the wait for the fence to open at all.
// Why here and not in blockdev/: blockdev owns the fence (what "current" means); what to do when it
// fails, end this VM, is the VMM's, as is the check of the same fence before every disk write.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "blockdev/clock.h"
#include "blockdev/fence.h"
#include "vmm/vcpu.h"

namespace minihv {

// How often the watch looks at the fence: a small share of the lease's `fail` - `renew` margin, so
// the VM ends within a couple of milliseconds of the node's own lease deadline.
inline constexpr std::chrono::milliseconds kFenceWatchPeriod{2};
// How often a VM waiting for its fence to open looks again.
inline constexpr std::chrono::milliseconds kFenceOpenPoll{1};

// Ends the VM (through `end`, once) when an opened fence stops allowing writes. The thread stops
// with the object.
class FenceWatch {
public:
  using End = std::function<void(VmEnd why, const std::string& message)>;
  FenceWatch(std::shared_ptr<const blockdev::Fence> fence, End end,
             const blockdev::Clock& clock = blockdev::system_clock());
  ~FenceWatch();
  FenceWatch(const FenceWatch&) = delete;
  FenceWatch& operator=(const FenceWatch&) = delete;

private:
  void watch();

  std::shared_ptr<const blockdev::Fence> fence_;
  End end_;
  const blockdev::Clock& clock_;
  std::atomic<bool> quit_{false};
  std::thread thread_;  // last: starts once everything it reads is set
};

// Waits until the fence allows writes (the node has handed this VM its leases); false when it has
// not after `backstop`.
bool wait_for_fence_open(const blockdev::Fence& fence, std::chrono::steady_clock::duration backstop,
                         const blockdev::Clock& clock = blockdev::system_clock());

}  // namespace minihv
