// common/uring.h — a small owner of one io_uring (liburing), for one thread at a time.
//
// Owns: queue set-up/teardown and the submit/complete plumbing. A ring takes only the operations
// minihv submits (reads, writes, fsync, timeouts, socket messages: kAllowedOps in uring.cc); a new
// one must be added there, or the kernel refuses it (EACCES). Callers tag each SQE with a
// 64-bit user_data and get (user_data, res) back; what the operations mean is theirs.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <functional>

#include "common/status.h"

namespace minihv {

class Uring {
public:
  Uring() = default;
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  Status init(unsigned entries);
  bool initialized() const { return initialized_; }

  // An SQE to fill, or nullptr when the submission queue is full (call submit() first).
  io_uring_sqe* sqe();
  // Submits what was queued; returns how many were taken.
  Result<unsigned> submit();
  // Submits and waits for at least `wait_nr` completions.
  Status submit_and_wait(unsigned wait_nr);
  // Calls fn(user_data, res) for every completion ready now; returns how many were reaped.
  unsigned reap(const std::function<void(uint64_t, int32_t)>& fn);
  // The ring's fd, for registering an eventfd or polling.
  int fd() const { return ring_.ring_fd; }
  io_uring* raw() { return &ring_; }

private:
  io_uring ring_{};
  bool initialized_ = false;
};

}  // namespace minihv
