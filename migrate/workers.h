// migrate/workers.h — one thread per migration stream. The owner (the migration's own thread) gives
// every worker the same job, each runs it for its stream, and the owner waits for all of them.
//
// Owns: the threads (started by the constructor, joined by the destructor), handing out a job and
// collecting each stream's Status, and the "a stream failed, stop early" flag.
// Must not know: what a job does (source.cc encodes and sends a stream's pages; destination.cc
// receives and decodes a stream's frames).
//
// Threading: start()/wait()/run() on the owner's thread only; a job runs on its worker's thread and
// may read cancelled(). Everything the owner wrote before start() is visible to the jobs, and
// everything the jobs wrote is visible to the owner after wait() (a mutex hand-off).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"

namespace minihv::migrate {

class StreamWorkers {
public:
  using Job = std::function<Status(uint16_t stream)>;

  // Threads for streams first ..= first + count - 1, named "<name><stream>" (e.g. "mig-tx0").
  StreamWorkers(uint16_t first, uint16_t count, const char* name);
  // Waits for a running job, then ends and joins every thread.
  ~StreamWorkers();
  StreamWorkers(const StreamWorkers&) = delete;
  StreamWorkers& operator=(const StreamWorkers&) = delete;

  uint16_t count() const { return static_cast<uint16_t>(threads_.size()); }
  // Runs job(stream) on every worker; returns at once (one job at a time: wait() before the next).
  void start(Job job);
  // Waits until every worker finished the job; the first failure in stream order, or ok.
  Status wait();
  Status run(Job job) {
    start(std::move(job));
    return wait();
  }
  // A job failed on some stream: the others may give up early.
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

private:
  void loop(uint16_t stream, size_t slot);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Job job_;
  uint64_t generation_ = 0;
  size_t running_ = 0;
  std::atomic<bool> cancelled_{false};
  bool ending_ = false;
  std::vector<Status> results_;
  std::vector<std::thread> threads_;
};

}  // namespace minihv::migrate
