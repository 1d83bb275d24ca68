#include "common/uring.h"

namespace minihv {

Uring::~Uring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

Status Uring::init(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) return Status::from_errno("io_uring_queue_init", -rc);
  initialized_ = true;
  return Status::ok();
}

io_uring_sqe* Uring::sqe() { return io_uring_get_sqe(&ring_); }

Result<unsigned> Uring::submit() {
  int rc = io_uring_submit(&ring_);
  if (rc < 0) return Status::from_errno("io_uring_submit", -rc);
  return static_cast<unsigned>(rc);
}

Status Uring::submit_and_wait(unsigned wait_nr) {
  int rc;
  do rc = io_uring_submit_and_wait(&ring_, wait_nr);
  while (rc == -EINTR);
  if (rc < 0) return Status::from_errno("io_uring_submit_and_wait", -rc);
  return Status::ok();
}

unsigned Uring::reap(const std::function<void(uint64_t, int32_t)>& fn) {
  io_uring_cqe* cqe;
  unsigned head, n = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    fn(cqe->user_data, cqe->res);
    ++n;
  }
  io_uring_cq_advance(&ring_, n);
  return n;
}

}  // namespace minihv
