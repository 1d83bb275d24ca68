#include "vmm/fence_watch.h"

namespace minihv {

FenceWatch::FenceWatch(std::shared_ptr<const blockdev::Fence> fence, End end, const blockdev::Clock& clock)
    : fence_(std::move(fence)), end_(std::move(end)), clock_(clock), thread_([this] { watch(); }) {}

FenceWatch::~FenceWatch() {
  quit_ = true;
  if (thread_.joinable()) thread_.join();
}

void FenceWatch::watch() {
  while (!quit_.load()) {
    if (fence_->opened() && !fence_->may_write(clock_)) {
      end_(VmEnd::kError, "the node's lease on this VM expired (the node froze, died or lost the volume): "
                          "VM stopped so that another node can run it");
      return;
    }
    std::this_thread::sleep_for(kFenceWatchPeriod);
  }
}

bool wait_for_fence_open(const blockdev::Fence& fence, std::chrono::steady_clock::duration backstop,
                         const blockdev::Clock& clock) {
  const auto deadline = std::chrono::steady_clock::now() + backstop;
  while (!fence.may_write(clock)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kFenceOpenPoll);
  }
  return true;
}

}  // namespace minihv
