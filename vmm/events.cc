#include "vmm/events.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "common/fd.h"

namespace minihv {

void VmEvents::publish(nlohmann::json event) {
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
    kept_.push_back(std::move(event));
    if (kept_.size() > kMaxKeptEvents) {
      kept_.pop_front();
      first_++;
    }
  }
  wake_all();
}

void VmEvents::finish(nlohmann::json ended) {
  publish(std::move(ended));
  {
    std::lock_guard lock(mu_);
    finished_ = true;
  }
  wake_all();
}

void VmEvents::wake_all() {
  std::lock_guard lock(mu_);
  for (int fd : wake_fds_) (void)!::eventfd_write(fd, 1);
}

bool VmEvents::send_from(int fd, uint64_t& next, bool& finished) {
  std::vector<nlohmann::json> batch;
  {
    std::lock_guard lock(mu_);
    next = std::max(next, first_);
    for (uint64_t i = next; i < first_ + kept_.size(); ++i) batch.push_back(kept_[i - first_]);
    next = first_ + kept_.size();
    finished = finished_;
  }
  for (const auto& e : batch)
    if (!jsonl::write_line(fd, e)) return false;
  return true;
}

void VmEvents::stream(int fd, int stop_fd, int wake_fd) {
  uint64_t next = 0;
  for (;;) {
    bool finished = false;
    if (!send_from(fd, next, finished) || finished) return;
    pollfd fds[] = {{stop_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}, {fd, POLLRDHUP, 0}};
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0 || (fds[2].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return;
    eventfd_t ignored;
    if (fds[1].revents != 0) (void)::eventfd_read(wake_fd, &ignored);
  }
}

jsonl::StreamOpener VmEvents::opener() {
  return [this](const nlohmann::json&) -> Result<jsonl::Stream> {
    return jsonl::Stream([this](int fd, int stop_fd, const std::string&) {
      UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      if (!wake.valid()) return;
      {
        std::lock_guard lock(mu_);
        wake_fds_.push_back(wake.get());
      }
      stream(fd, stop_fd, wake.get());  // registered first: nothing published after the copy is missed
      std::lock_guard lock(mu_);
      std::erase(wake_fds_, wake.get());
    });
  };
}

}  // namespace minihv
