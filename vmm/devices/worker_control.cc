#include "vmm/devices/worker_control.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace minihv {

Status WorkerControl::init(const char* what) {
  fd_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!fd_.valid()) return Status::from_errno(std::string(what) + ": control eventfd");
  return Status::ok();
}

bool WorkerControl::wake() {
  const uint64_t one = 1;
  return ::write(fd_.get(), &one, sizeof one) == sizeof one;
}

bool WorkerControl::request(bool paused, bool wait) {
  std::unique_lock lock(mu_);
  paused_ = paused;
  const uint64_t seq = ++req_seq_;
  if (!wake()) return false;
  if (wait) cv_.wait(lock, [&] { return ack_seq_ >= seq; });
  return true;
}

bool WorkerControl::refresh() {
  std::unique_lock lock(mu_);
  const uint64_t seq = ++req_seq_;
  if (!wake()) return false;
  cv_.wait(lock, [&] { return ack_seq_ >= seq; });
  return true;
}

WorkerControl::Request WorkerControl::take() {
  std::lock_guard lock(mu_);
  return {paused_, req_seq_};
}

void WorkerControl::ack(uint64_t seq) {
  std::lock_guard lock(mu_);
  if (seq <= ack_seq_) return;
  ack_seq_ = seq;
  cv_.notify_all();
}

void WorkerControl::abandon() {
  std::lock_guard lock(mu_);
  ack_seq_ = req_seq_ = UINT64_MAX;
  cv_.notify_all();
}

}  // namespace minihv
