#include "migrate/workers.h"

#include <pthread.h>

#include <string>

#include "common/sandbox.h"

namespace minihv::migrate {

StreamWorkers::StreamWorkers(uint16_t first, uint16_t count, const char* name) : results_(count) {
  for (uint16_t i = 0; i < count; ++i) {
    threads_.emplace_back([this, first, i] { loop(static_cast<uint16_t>(first + i), i); });
    const std::string thread_name = name + std::to_string(first + i);
    pthread_setname_np(threads_.back().native_handle(), thread_name.substr(0, 15).c_str());
  }
}

StreamWorkers::~StreamWorkers() {
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return running_ == 0; });
    ending_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void StreamWorkers::start(Job job) {
  {
    std::lock_guard lock(mu_);
    job_ = std::move(job);
    running_ = threads_.size();
    cancelled_ = false;
    for (auto& r : results_) r = Status::ok();
    ++generation_;
  }
  cv_.notify_all();
}

Status StreamWorkers::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return running_ == 0; });
  for (const Status& r : results_)
    if (!r) return r;
  return Status::ok();
}

void StreamWorkers::loop(uint16_t stream, size_t slot) {
  uint64_t seen = 0;
  const Status entered = sandbox::enter(sandbox::ThreadClass::kMigration);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return ending_ || generation_ != seen; });
      if (ending_) return;
      seen = generation_;
      job = job_;
    }
    Status result = entered.is_ok() ? job(stream) : entered;
    {
      std::lock_guard lock(mu_);
      if (!result) cancelled_ = true;
      results_[slot] = std::move(result);
      --running_;
    }
    cv_.notify_all();
  }
}

}  // namespace minihv::migrate
