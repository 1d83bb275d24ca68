#include "cluster/vm_child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <optional>
#include <thread>

#include "blockdev/extent_device.h"
#include "blockdev/lease_priority.h"
#include "cluster/timings.h"
#include "common/log.h"
#include "vmm/api.h"

namespace minihv::cluster {

namespace {

constexpr size_t kMaxEventLine = 64 * 1024;  // an event is a short object; a progress one the longest
// An ended child's disk requests still in the kernel: how often they are counted, and after how long
// the node says it waits for them.
constexpr auto kDiskIoPoll = std::chrono::milliseconds(5);
constexpr auto kDiskIoNotice = std::chrono::milliseconds(200);

std::vector<char*> argv_of(const std::vector<std::string>& args) {
  std::vector<char*> v;
  for (const auto& a : args) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

// A string member of `j`, or "" (an event's fields are not trusted to have their types).
std::string text_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Waits until `fd` is readable (true) or `stop_fd` is (false).
bool readable(int fd, int stop_fd) {
  pollfd fds[] = {{stop_fd, POLLIN, 0}, {fd, POLLIN, 0}};
  while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
  }
  return fds[0].revents == 0;
}

// Sleeps `ms`; true when `stop_fd` became readable first.
bool stopped_within(int stop_fd, int ms) {
  pollfd fd = {stop_fd, POLLIN, 0};
  int rc;
  while ((rc = ::poll(&fd, 1, ms)) < 0 && errno == EINTR) {
  }
  return rc > 0;
}

// At most `max` bytes of `s`, not cut inside a UTF-8 sequence.
std::string cut_utf8(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

Result<CappedFile> open_append(const std::string& path) {
  return CappedFile::open(path, kDefaultOutputCap, CappedFile::Start::kAppend);
}

}  // namespace

// The parent's ends of the child's stdout and stderr, the ends the child gets, and the files.
struct VmChild::Pipes {
  UniqueFd out_r, out_w, err_r, err_w, null;
  std::optional<CappedFile> console, log;  // capped: a guest that writes without end fills nothing

  static Result<Pipes> open(const ChildSpec& spec) {
    Pipes p;
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return Status::from_errno("pipe");
    p.out_r.reset(out[0]);
    p.out_w.reset(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return Status::from_errno("pipe");
    p.err_r.reset(err[0]);
    p.err_w.reset(err[1]);
    auto console = open_append(spec.console);
    if (!console) return console.status();
    auto log = open_append(spec.log);
    if (!log) return log.status();
    p.console.emplace(std::move(*console));
    p.log.emplace(std::move(*log));
    p.null.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!p.null.valid()) return Status::from_errno("opening /dev/null");
    p.console->write(spec.banner.data(), spec.banner.size());
    p.log->write(spec.banner.data(), spec.banner.size());
    return p;
  }
};

VmChild::VmChild(const ChildSpec& spec, std::shared_ptr<std::atomic<pid_t>> pid, OnEvent on_event)
    : api_(spec.api),
      disk_(spec.extent_fd >= 0 ? ::fcntl(spec.extent_fd, F_DUPFD_CLOEXEC, 0) : -1),
      pid_(std::move(pid)), on_event_(std::move(on_event)),
      stop_(::eventfd(0, EFD_CLOEXEC)) {}

namespace {

// In the child, after fork: `fds` become fds 3, 4, ... (a -1 leaves its number closed), every other
// fd from 3 up is closed. Each is first moved above them all, so that none is overwritten before it
// moves. Async-signal-safe.
template <size_t N>
void hand_over_fds(const std::array<int, N>& fds) {
  constexpr int kFirst = 3, kParked = 64;
  static_assert(kFirst + N <= kParked, "the handed fds would overlap where they are parked");
  std::array<int, N> parked{};
  for (size_t i = 0; i < N; ++i) parked[i] = fds[i] >= 0 ? ::fcntl(fds[i], F_DUPFD_CLOEXEC, kParked) : -1;
  for (size_t i = 0; i < N; ++i)
    if (parked[i] >= 0) ::dup2(parked[i], kFirst + static_cast<int>(i));  // the copy is not close-on-exec
  ::close_range(kFirst + N, ~0U, 0);
}

constexpr char kCannotBecomeUser[] = "minihv: error: the VM process could not take --vm-user's ids\n";

}  // namespace

// The child dies with its node (a VM must never outlive the process renewing its leases): console
// and log on pipes, stdin /dev/null, the fence as fd 3, its disk's extent as fd 4, the page for its
// writes' deadlines as fd 5 and no other fd of the node, default signals.
Result<std::unique_ptr<VmChild>> VmChild::spawn(const ChildSpec& spec, const Forker& fork,
                                                std::shared_ptr<std::atomic<pid_t>> pid, OnEvent on_event) {
  auto pipes = Pipes::open(spec);
  if (!pipes) return pipes.status();
  std::unique_ptr<VmChild> c(new VmChild(spec, std::move(pid), std::move(on_event)));
  if (!c->stop_.valid()) return Status::from_errno("eventfd");
  const std::vector<char*> argv = argv_of(spec.argv);
  const pid_t parent = ::getpid();
  const int out = pipes->out_w.get(), err = pipes->err_w.get(), null = pipes->null.get();
  const int fence = spec.fence_fd, extent = spec.extent_fd, deadlines = spec.deadlines_fd;
  const VmUser* user = spec.user;
  const pid_t p = fork([&] {
    ::setsid();  // a terminal's Ctrl-C or hang-up is for the node, not its VMs
    ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    hand_over_fds(std::array{fence, extent, deadlines});
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    blockdev::use_normal_priority();  // raw syscalls only: async-signal-safe
    if (user && !become_vm_user(*user)) {
      (void)!::write(2, kCannotBecomeUser, sizeof kCannotBecomeUser - 1);
      ::_exit(126);
    }
    // After the switch of ids, which clears the parent-death signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);  // the VMM (which sets it too) and all it may exec
    if (::getppid() != parent) ::_exit(127);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  });
  if (p < 0) return Status::from_errno("fork", -p);
  c->pid_->store(p);
  pipes->out_w.reset();  // the child's now: the readers see its end
  pipes->err_w.reset();
  c->start_threads(std::move(*pipes));
  return c;
}

void VmChild::start_threads(Pipes pipes) {
  log_copier_ = std::thread([in = std::move(pipes.err_r), sink = std::move(*pipes.log)]() mutable {
    blockdev::use_normal_priority();  // (created by a node's starter thread, which is real-time)
    char buf[4096];
    ssize_t n;
    while ((n = ::read(in.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) sink.write(buf, static_cast<size_t>(n));
  });
  events_reader_ = std::thread([this] {
    blockdev::use_normal_priority();
    read_events();
  });
  console_reader_ = std::thread([this, in = std::move(pipes.out_r), sink = std::move(*pipes.console)]() mutable {
    blockdev::use_normal_priority();
    read_console(std::move(in), std::move(sink));
  });
}

VmChild::~VmChild() {
  (void)!::eventfd_write(stop_.get(), 1);
  if (const pid_t p = pid_->load(); p > 0) ::kill(p, SIGKILL);
  if (console_reader_.joinable()) console_reader_.join();  // it joins the other two
}

void VmChild::emit(const ChildEvent& e) {
  std::lock_guard lock(emit_mu_);
  on_event_(e);
}

// Copies the console to its file, hands on the lines the node acts on, and reaps the child when
// its stdout closes.
void VmChild::read_console(UniqueFd in, CappedFile sink) {
  LineSplitter split(kMaxConsoleLine);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(in.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n <= 0) continue;
    sink.write(buf, static_cast<size_t>(n));
    for (auto& line : split.feed({buf, static_cast<size_t>(n)})) {
      ChildEvent e(ChildEvent::Kind::kConsole);
      e.console = parse_console_line(line);
      if (e.console.kind == ConsoleFact::kNone) continue;
      e.text = std::move(line);
      emit(e);
    }
  }
  reap(pid_->load());
}

void VmChild::reap(pid_t p) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(p), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  wait_for_disk_io(p);
  pid_->store(-1);  // before the pid is freed: nobody signals a reused pid
  ChildEvent exiting(ChildEvent::Kind::kExiting);
  exiting.pid = p;
  emit(exiting);
  int status = 0;
  while (::waitpid(p, &status, 0) < 0 && errno == EINTR) {
  }
  exited_ = true;
  events_reader_.join();  // its socket closed with the child: the "ended" event is in
  log_copier_.join();
  ChildEvent ended(ChildEvent::Kind::kEnded);
  ended.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  {
    std::lock_guard lock(ended_mu_);
    ended.why = ended_why_;
    ended.text = ended_error_;
  }
  emit(ended);
}

// The child has ended, but writes it handed to the kernel may not have: an ending process does not
// wait for its io_uring requests. Until its disk device has none left, the child is not gone (its pid
// stays, unreaped, so the node keeps the disk's lease and may fence itself: Node::check_write_deadlines).
void VmChild::wait_for_disk_io(pid_t p) {
  if (!disk_.valid()) return;
  const auto since = std::chrono::steady_clock::now();
  bool said = false;
  for (;;) {
    auto n = blockdev::requests_in_flight(disk_.get());
    if (!n || *n == 0) break;  // unreadable: no count to wait on (the kernel's own error)
    if (!said && std::chrono::steady_clock::now() - since >= kDiskIoNotice) {
      LOG_WARN("vm pid %d has ended with %llu request(s) to its disk still in the kernel: it counts as running "
               "until they complete",
               p, static_cast<unsigned long long>(*n));
      said = true;
    }
    std::this_thread::sleep_for(kDiskIoPoll);
  }
  disk_.reset();  // now the device may be unbound (autoclear) and serve another VM
}

// Connects to the child's "events" stream, retrying while the child has not bound its socket yet.
bool VmChild::connect_events(UniqueFd& fd, std::string& early) {
  while (!exited_) {
    auto c = api_open_stream(api_, {{"cmd", "events"}}, timings::as_ms(timings::kChildEventsConnect));
    if (c) {
      fd = std::move(c->fd);
      early = std::move(c->early);
      return true;
    }
    if (stopped_within(stop_.get(), timings::as_ms(timings::kChildEventsRetry))) return false;
  }
  return false;
}

void VmChild::read_events() {
  UniqueFd fd;
  std::string early;
  while (connect_events(fd, early)) {
    LineSplitter split(kMaxEventLine);
    std::string_view bytes = early;
    char buf[4096];
    for (;;) {
      for (const auto& line : split.feed(bytes)) on_event_line(line);
      if (!readable(fd.get(), stop_.get())) return;
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR)) break;  // the child closed it (it ends) or it broke
      bytes = std::string_view(buf, n > 0 ? static_cast<size_t>(n) : 0);
    }
    std::lock_guard lock(ended_mu_);
    if (!ended_why_.empty()) return;
  }
}

// One line of the events stream (vmm/events.h); anything else is ignored, whatever the child sends.
void VmChild::on_event_line(const std::string& line) {
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object()) return;
  const std::string name = text_of(j, "event");
  using Kind = ChildEvent::Kind;
  if (name == "ended") {
    std::lock_guard lock(ended_mu_);
    ended_why_ = text_of(j, "why").empty() ? "?" : cut_utf8(text_of(j, "why"), kMaxErrorText);
    ended_error_ = cut_utf8(text_of(j, "error"), kMaxErrorText);
    return;
  }
  ChildEvent e(Kind::kRunning);
  if (name == "listening") {
    e.kind = Kind::kListening;
    e.text = cut_utf8(text_of(j, "address"), kMaxErrorText);
  } else if (name == "incoming") {
    e.kind = Kind::kIncoming;
    if (j.contains("progress")) e.progress = j["progress"];
  } else if (name == "arrived") {
    e.kind = Kind::kArrived;
  } else if (name != "running") {
    return;
  }
  emit(e);
}

}  // namespace minihv::cluster
