// blockdev/lease_priority.h — lease work ahead of guest work on the same host and storage.
//
// A lease renewal is one 4 KiB read and one O_DSYNC write every `renew`; it must complete within
// the fail timeout however busy the host is. Measured on the 2-vCPU test machine with two busy
// `disk` guests: renewals of 100-600 ms (threads woken by their I/O completion but left waiting
// for a CPU behind the guests' vCPU threads), enough to miss the 800 ms fail timeout. Like
// sanlock's high-priority mode, the threads that renew leases and pass their validity on run
// with a real-time CPU policy (SCHED_RR, they need microseconds per renewal) and real-time I/O
// priority (served first by mq-deadline and bfq). Both are per thread and inherited by threads and
// processes created afterwards; a VM process started by a node drops them (use_normal_priority).
#pragma once

namespace minihv::blockdev {

// For the calling thread: SCHED_RR and real-time I/O priority where allowed (root or
// CAP_SYS_NICE/CAP_SYS_ADMIN), else the best it may have. Returns false when nothing was raised.
bool use_lease_priority();
// Back to the defaults (SCHED_OTHER, best-effort I/O): for a VM process forked by a node.
void use_normal_priority();

}  // namespace minihv::blockdev
