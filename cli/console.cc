// `minihv console --api SOCK`: a running VM's serial console on this terminal — the guest's
// output here, keystrokes to the guest — through the control socket's "console" stream.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "cli/commands.h"
#include "cli/terminal.h"
#include "vmm/api.h"

namespace minihv::cli {

namespace {

// Input from a pipe: after its end, the guest's answer to the last bytes still gets this long.
constexpr auto kDrainAfterEof = std::chrono::milliseconds(500);
constexpr size_t kChunk = 4096;
constexpr int kExitSignalBase = 128;  // ended by signal N: 128 + N, as a shell reports it

using Clock = std::chrono::steady_clock;

bool write_all(int fd, const char* p, size_t n, int flags_for_socket = -1) {
  while (n > 0) {
    const ssize_t w = flags_for_socket >= 0 ? ::send(fd, p, n, flags_for_socket) : ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The termination signals, read from a signalfd so that leaving restores the terminal (RAII).
class Signals {
public:
  Signals() {
    sigemptyset(&set_);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set_, s);
    sigprocmask(SIG_BLOCK, &set_, nullptr);
    fd_.reset(signalfd(-1, &set_, SFD_CLOEXEC));
    ::signal(SIGPIPE, SIG_IGN);  // a closed stdout or socket is an error value, not a death
  }
  int fd() const { return fd_.get(); }
  int read_signal() const {
    signalfd_siginfo info{};
    return ::read(fd_.get(), &info, sizeof info) == sizeof info ? static_cast<int>(info.ssi_signo) : SIGTERM;
  }

private:
  sigset_t set_;
  UniqueFd fd_;
};

class Session {
public:
  Session(int sock, bool terminal) : sock_(sock), terminal_(terminal) {}

  // Until the user detaches, input ends (and the drain is over), the VM goes, or a signal.
  int run(const Signals& signals) {
    for (;;) {
      pollfd fds[3] = {{sock_, POLLIN, 0}, {eof_ ? -1 : STDIN_FILENO, POLLIN, 0}, {signals.fd(), POLLIN, 0}};
      const int rc = ::poll(fds, 3, timeout_ms());
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) return fail("poll");
      if (rc == 0 && eof_) return kExitOk;  // drained
      if (fds[2].revents) return on_signal(signals.read_signal());
      if (fds[0].revents) {
        if (int done = from_vm(); done >= 0) return done;
      }
      if (fds[1].revents) {
        if (int done = from_user(); done >= 0) return done;
      }
    }
  }

private:
  int timeout_ms() const {
    if (!eof_) return -1;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(drain_until_ - Clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  }

  int fail(const char* what) {
    std::fprintf(stderr, "minihv: error: console: %s: %s\n", what, std::strerror(errno));
    return kExitFailure;
  }

  int on_signal(int sig) {
    std::fprintf(stderr, "\nminihv: detached (signal %d)\n", sig);
    return kExitSignalBase + sig;
  }

  // Guest output to stdout; -1 to go on, else the exit status.
  int from_vm() {
    char buf[kChunk];
    const ssize_t n = ::recv(sock_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) return -1;
    if (n <= 0) {
      std::fprintf(stderr, "\nminihv: the VM's console closed (the VM ended)\n");
      return kExitOk;
    }
    if (!write_all(STDOUT_FILENO, buf, static_cast<size_t>(n))) return fail("writing stdout");
    return -1;
  }

  // Keystrokes (or piped bytes) to the guest; -1 to go on, else the exit status.
  int from_user() {
    char buf[kChunk];
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return -1;
    if (n <= 0) {
      eof_ = true;
      drain_until_ = Clock::now() + kDrainAfterEof;
      return -1;
    }
    std::string_view keys(buf, static_cast<size_t>(n));
    const size_t esc = terminal_ ? find_escape(keys) : std::string_view::npos;
    if (!write_all(sock_, keys.data(), std::min(esc, keys.size()), MSG_NOSIGNAL)) return fail("sending to the VM");
    if (esc == std::string_view::npos) return -1;
    std::fprintf(stderr, "\nminihv: detached\n");
    return kExitOk;
  }

  int sock_;
  bool terminal_;
  bool eof_ = false;
  Clock::time_point drain_until_;
};

int console(const std::string& api) {
  Signals signals;  // before anything can be interrupted
  auto conn = api_open_stream(api, {{"cmd", "console"}});
  if (!conn) {
    std::fprintf(stderr, "minihv: error: %s\n", conn.message().c_str());
    return kExitFailure;
  }
  RawTerminal terminal(STDIN_FILENO);
  if (terminal.active()) std::fprintf(stderr, "minihv: attached to %s; %s detaches\n", api.c_str(), kEscapeName);
  if (!write_all(STDOUT_FILENO, conn->early.data(), conn->early.size())) return kExitFailure;
  return Session(conn->fd.get(), terminal.active()).run(signals);
}

}  // namespace

Command add_console_command(CLI::App& app) {
  auto api = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand("console", "Attach this terminal to a running VM's serial console");
  sub->add_option("--api", *api, "The VM's control socket")->required();
  sub->footer(std::string("On a terminal: raw mode, every key goes to the guest, ") + kEscapeName +
              " detaches. From a pipe: its bytes are sent, and the command ends 0.5 s after the pipe does.");
  return {sub, [api] { return console(*api); }};
}

}  // namespace minihv::cli
