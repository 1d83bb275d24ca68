// vmm/devices/worker_control.h — how a device pauses, resumes and stops its I/O thread, and learns
// that the thread has seen it.
//
// Owns: the control eventfd the thread waits on beside its queues, the requested state (paused)
// with a sequence number per request, and the thread's acknowledgement of the last request it has
// acted on. Must not know: queues, io_uring or poll (the thread waits on fd() its own way).
//
// Threads: the device side (pause/resume/wake) from any thread; the thread side (take/ack/abandon)
// from the I/O thread only.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

class WorkerControl {
public:
  explicit WorkerControl(bool paused) : paused_(paused) {}
  // Makes the eventfd; `what` names the device in the error.
  Status init(const char* what);
  int fd() const { return fd_.get(); }

  // --- device side ---
  // Asks the thread to pause or run; with `wait`, returns once the thread has acknowledged it.
  // False when the thread could not be woken (then nothing is waited for).
  bool request(bool paused, bool wait);
  // A new request with the same paused state, for a thread that reads more than paused_ when it
  // takes a request (virtio-net's active pairs); returns once it was acknowledged.
  bool refresh();
  // Wakes the thread (e.g. after its jthread was asked to stop). False if the eventfd write failed.
  bool wake();

  // --- I/O thread side ---
  struct Request {
    bool paused = false;
    uint64_t seq = 0;
  };
  // The latest request; the thread acts on it, then acknowledges its seq (once it has drained).
  Request take();
  void ack(uint64_t seq);
  // The thread is gone for good: nobody may wait for it any more.
  void abandon();

private:
  UniqueFd fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = false;
  uint64_t req_seq_ = 0, ack_seq_ = 0;
};

}  // namespace minihv
