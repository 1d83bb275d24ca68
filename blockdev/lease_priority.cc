#include "blockdev/lease_priority.h"

#include <linux/ioprio.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace minihv::blockdev {

namespace {

constexpr int kLeaseRrPriority = 10;  // above any ordinary thread, below kernel threads like watchdogs

bool set_ioprio(int value) { return ::syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) == 0; }

}  // namespace

bool use_lease_priority() {
  sched_param p{};
  p.sched_priority = kLeaseRrPriority;
  const bool cpu = pthread_setschedparam(pthread_self(), SCHED_RR, &p) == 0;
  const bool io = set_ioprio(IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0)) || set_ioprio(IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 0));
  return cpu || io;
}

void use_normal_priority() {
  sched_param p{};
  (void)::syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &p);  // raw: called between fork and exec
  (void)set_ioprio(IOPRIO_PRIO_VALUE(IOPRIO_CLASS_NONE, 0));
}

}  // namespace minihv::blockdev
