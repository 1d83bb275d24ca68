#include "common/uring.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <iterator>

namespace minihv {

Uring::~Uring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

namespace {

// Every operation minihv submits. A ring takes no other: seccomp cannot see what a ring does, so a
// thread the guest took over must not get an open, a connect or a rename through one.
constexpr uint8_t kAllowedOps[] = {IORING_OP_READ,   IORING_OP_READV,   IORING_OP_WRITE, IORING_OP_WRITEV,
                                   IORING_OP_FSYNC,  IORING_OP_TIMEOUT, IORING_OP_SENDMSG,
                                   IORING_OP_RECVMSG, IORING_OP_RECV,   IORING_OP_SEND};

Status restrict_ops(io_uring* ring) {
  io_uring_restriction r[std::size(kAllowedOps) + 1] = {};
  size_t n = 0;
  for (uint8_t op : kAllowedOps) {
    r[n].opcode = IORING_RESTRICTION_SQE_OP;
    r[n++].sqe_op = op;
  }
  r[n].opcode = IORING_RESTRICTION_REGISTER_OP;  // a migration lane's wake-up eventfd
  r[n++].register_op = IORING_REGISTER_EVENTFD;
  // The raw call: Debian's liburing declares io_uring_register_restrictions but does not export it.
  if (::syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, r, n) < 0)
    return Status::from_errno("io_uring_register(RESTRICTIONS)");
  if (::syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0)
    return Status::from_errno("io_uring_register(ENABLE_RINGS)");
  return Status::ok();
}

}  // namespace

Status Uring::init(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, IORING_SETUP_R_DISABLED);
  if (rc < 0) return Status::from_errno("io_uring_queue_init", -rc);
  initialized_ = true;
  return restrict_ops(&ring_);
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
