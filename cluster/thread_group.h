// cluster/thread_group.h — an owner for short-lived threads (a VM being stopped, a signal watcher):
// each runs to its end and is joined, at the latest when the group is joined or destroyed. Nothing
// is detached, so no thread outlives what it uses. Finished threads are joined as new ones start.
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace minihv::cluster {

class ThreadGroup {
public:
  ThreadGroup() = default;
  ~ThreadGroup() { join_all(); }
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  // Starts `fn` on a thread of the group. (Never call join_all from one of them.)
  template <class F>
  void spawn(F&& fn) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([fn = std::forward<F>(fn), done]() mutable {
      fn();
      done->store(true);
    });
    std::list<Member> finished;
    {
      std::lock_guard lock(mu_);
      for (auto it = members_.begin(); it != members_.end();)
        if (it->done->load()) finished.splice(finished.end(), members_, it++);
        else ++it;
      members_.push_back({std::move(t), std::move(done)});
    }
    for (auto& m : finished) m.thread.join();  // its function has returned: at most its captures' destructors run
  }

  // Waits for every thread started so far.
  void join_all() {
    std::list<Member> all;
    {
      std::lock_guard lock(mu_);
      all.swap(members_);
    }
    for (auto& m : all) m.thread.join();
  }

  size_t running() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& m : members_) n += !m.done->load();
    return n;
  }

private:
  struct Member {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  mutable std::mutex mu_;
  std::list<Member> members_;
};

}  // namespace minihv::cluster
