#include "cli/terminal.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace minihv::cli {

namespace {
constexpr size_t kReadChunk = 256;
}  // namespace

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (!isatty(fd_) || tcgetattr(fd_, &saved_) < 0) return;
  termios raw = saved_;
  raw.c_iflag &= ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  raw.c_cflag &= ~static_cast<tcflag_t>(CSIZE | PARENB);
  raw.c_cflag |= CS8;
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  active_ = tcsetattr(fd_, TCSAFLUSH, &raw) == 0;
}

RawTerminal::~RawTerminal() {
  if (active_) tcsetattr(fd_, TCSAFLUSH, &saved_);
}

TerminalInput::TerminalInput(int fd, std::function<void(const std::string&)> input, std::function<void()> on_escape)
    : fd_(fd), input_(std::move(input)), on_escape_(std::move(on_escape)), stop_fd_(eventfd(0, EFD_CLOEXEC)) {
  if (stop_fd_.valid()) thread_ = std::thread([this] { loop(); });
}

TerminalInput::~TerminalInput() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
}

void TerminalInput::loop() {
  pthread_setname_np(pthread_self(), "terminal");
  char buf[kReadChunk];
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // end of input: the console output goes on
    const std::string_view keys(buf, static_cast<size_t>(n));
    const size_t esc = find_escape(keys);
    if (esc > 0) input_(std::string(keys.substr(0, esc)));
    if (esc != std::string_view::npos) {
      on_escape_();
      return;
    }
  }
}

}  // namespace minihv::cli
