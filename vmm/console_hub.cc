#include "vmm/console_hub.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace minihv {

namespace {

constexpr size_t kRecvChunk = 4096;

void wake(int fd) {
  uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

void clear_wake(int fd) {
  uint64_t n;
  (void)!::read(fd, &n, sizeof n);
}

}  // namespace

ConsoleHub::Client::Client(ConsoleHub& hub) : hub_(hub), wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

ConsoleHub::Client::~Client() { hub_.detach(this); }

void ConsoleHub::Client::push(const char* data, size_t n) {
  std::lock_guard lock(mu_);
  const size_t room = kClientQueue - std::min(kClientQueue, queue_.size());
  const size_t keep = std::min(room, n);
  dropped_ += n - keep;
  if (keep == 0) return;
  const bool was_empty = queue_.empty();
  queue_.append(data, keep);
  if (was_empty) wake(wake_.get());  // one wake-up per batch, not per byte
}

std::string ConsoleHub::Client::take() {
  std::lock_guard lock(mu_);
  clear_wake(wake_.get());
  std::string out;
  if (dropped_ > 0)
    out = "\r\n[minihv: " + std::to_string(dropped_) + " bytes of console output dropped: this client read too slowly]\r\n";
  dropped_ = 0;
  out += queue_;
  queue_.clear();
  return out;
}

std::unique_ptr<ConsoleHub::Client> ConsoleHub::attach() {
  std::unique_ptr<Client> c(new Client(*this));
  if (!c->wake_.valid()) {
    c->wake_.reset();
    return nullptr;  // its destructor detaches what was never attached: harmless
  }
  std::lock_guard lock(mu_);
  clients_.push_back(c.get());
  count_.store(clients_.size());
  return c;
}

void ConsoleHub::detach(Client* c) {
  std::lock_guard lock(mu_);
  std::erase(clients_, c);
  count_.store(clients_.size());
}

void ConsoleHub::publish(const char* data, size_t n) {
  if (count_.load() == 0) return;
  std::lock_guard lock(mu_);
  for (Client* c : clients_) c->push(data, n);
}

void pump_console(int fd, int stop_fd, ConsoleHub::Client& client,
                  const std::function<void(const std::string&)>& input, const std::string& early) {
  if (!early.empty()) input(early);
  std::string out;  // taken from the queue, not yet sent
  size_t sent = 0;
  char buf[kRecvChunk];
  for (;;) {
    const bool sending = sent < out.size();
    pollfd fds[3] = {{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0},
                     {stop_fd, POLLIN, 0},
                     {client.wake_fd(), static_cast<short>(sending ? 0 : POLLIN), 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (fds[0].revents & (POLLERR | POLLNVAL)) return;
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return;  // the client detached
      if (n < 0 && errno != EAGAIN && errno != EINTR) return;
      if (n > 0) input(std::string(buf, static_cast<size_t>(n)));
    }
    if (fds[2].revents & POLLIN) {
      out = client.take();
      sent = 0;
    }
    if (sent < out.size() && (fds[0].revents & POLLOUT || fds[2].revents)) {
      const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) return;
      if (n > 0) sent += static_cast<size_t>(n);
    }
  }
}

}  // namespace minihv
