#include "common/sandbox.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <ucontext.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace minihv::sandbox {

namespace {

// The bits of an ioctl's request the kernel reads (its `unsigned int cmd`).
constexpr unsigned long kIoctlRequestMask = 0xffffffff;

// What every thread of a running VMM does: memory, futexes, time, signals, its own fds (reads,
// writes, polls, io_uring completions, the ioctls in add_ioctls), and ending.
const std::vector<std::string> kEveryThread = {
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "close", "lseek", "fcntl", "fstat", "newfstatat", "futex", "futex_waitv", "set_robust_list",
    "rseq", "clock_gettime", "clock_getres", "gettimeofday", "time", "clock_nanosleep", "nanosleep",
    "sched_yield", "sched_getaffinity", "getcpu", "getpid", "gettid", "rt_sigprocmask", "rt_sigpending",
    "rt_sigreturn", "sigaltstack", "restart_syscall", "exit", "exit_group", "munmap", "mremap", "madvise",
    "brk", "getrandom", "ppoll", "poll", "epoll_wait", "epoll_pwait", "io_uring_enter", "fsync",
    "fdatasync", "fallocate", "ftruncate", "copy_file_range", "sendmsg", "recvmsg", "sendto", "recvfrom",
    "membarrier",
    // With conditions (see add_conditional): ioctl, mmap, mprotect, prctl, tgkill.
};

// The control thread's additions: it opens files (a migration's key, the registry), makes sockets,
// rings, eventfds and threads (which narrow themselves: seccomp), and answers the control socket.
const std::vector<std::string> kControlExtra = {
    "openat", "open", "creat", "unlinkat", "unlink", "renameat", "renameat2", "rename", "mkdir", "mkdirat",
    "fchmod", "fchmodat", "chmod", "getdents64", "readlink", "readlinkat", "faccessat", "faccessat2",
    "access", "statx", "stat", "lstat", "getcwd", "statfs", "fstatfs", "utimensat", "umask", "flock",
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
    "setsockopt", "getsockopt", "shutdown", "sendfile", "splice", "pipe", "pipe2", "dup", "dup2", "dup3",
    "eventfd", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd4",
    "epoll_create1", "epoll_ctl", "io_uring_setup", "io_uring_register", "memfd_create", "getuid",
    "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "getppid", "getpgrp", "getsid",
    "fadvise64", "sched_getparam", "sched_getscheduler", "sched_setaffinity", "getrusage", "times", "sysinfo", "prlimit64", "uname",
    "rt_sigaction", "rt_sigtimedwait", "rt_sigsuspend", "seccomp", "set_tid_address", "sync_file_range", "mlock", "munlock",
    // clone only for threads (CLONE_THREAD); clone3 answers ENOSYS so glibc falls back to clone.
};

// A migration thread moves pages through sockets it was given: the control list without the file
// system and without new sockets.
const std::vector<std::string> kMigrationExtra = {
    "getsockname", "getpeername", "setsockopt", "getsockopt", "shutdown", "sendfile", "splice",
    "epoll_create1", "epoll_ctl", "eventfd2", "pipe2", "dup", "dup3", "io_uring_setup", "io_uring_register",
};

// AddressSanitizer's runtime tests whether memory is readable by writing it into a pipe, from
// any thread: a sanitizer build's every list allows making one.
#if defined(__SANITIZE_ADDRESS__)
#define MINIHV_SANDBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MINIHV_SANDBOX_ASAN 1
#endif
#endif
#ifdef MINIHV_SANDBOX_ASAN
const std::vector<std::string> kSanitizerExtra = {"pipe2"};
#else
const std::vector<std::string> kSanitizerExtra;
#endif

std::vector<std::string> join(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> all = a;
  all.insert(all.end(), b.begin(), b.end());
  return all;
}

std::atomic<bool> g_enabled{false};
thread_local ThreadClass t_class = ThreadClass::kControl;

// Syscall names for the violation report, resolved before any filter is on: the handler itself
// may only write and exit.
constexpr int kNames = 512;
constexpr size_t kNameLength = 24;
char g_names[kNames][kNameLength];

void resolve_names() {
  for (int nr = 0; nr < kNames; ++nr) {
    char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    if (!n) continue;
    std::snprintf(g_names[nr], kNameLength, "%s", n);
    std::free(n);
  }
}

// Signal-safe: appends `s` to buf at *len.
void put(char* buf, size_t cap, size_t* len, const char* s) {
  while (*s && *len + 1 < cap) buf[(*len)++] = *s++;
}

// In `base` (10 or 16; the caller writes any prefix).
void put_number(char* buf, size_t cap, size_t* len, unsigned long v, unsigned base = 10) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v && n < 23);
  while (n > 0 && *len + 1 < cap) buf[(*len)++] = digits[--n];
}

// The path an open asked for, from the trapped call's registers (x86-64): what a violation's
// line most needs to say where it came from. Null for other calls.
const char* opened_path(int nr, void* context) {
  const auto* regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
  if (nr == __NR_openat) return reinterpret_cast<const char*>(regs[REG_RSI]);
  if (nr == __NR_open) return reinterpret_cast<const char*>(regs[REG_RDI]);
  return nullptr;
}

// Files glibc opens on its own, once, on whatever thread gets there first (malloc reads the first
// when a thread's heap shrinks). They are refused quietly (EACCES, as if unreadable), and glibc
// keeps its defaults; any other open ends the VMM.
constexpr const char* kQuietlyRefused[] = {"/proc/sys/vm/overcommit_memory", "/sys/devices/system/cpu/online"};

// The request a trapped ioctl asked for: the kernel reads its low 32 bits only.
unsigned long ioctl_request(void* context) {
  return static_cast<unsigned long>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RSI]) & kIoctlRequestMask;
}

bool same(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

bool quietly_refused(const char* path) {
  for (const char* p : kQuietlyRefused)
    if (same(path, p)) return true;
  return false;
}

void on_violation(int, siginfo_t* info, void* context) {
  char line[512];
  size_t len = 0;
  char thread[16] = "?";
  (void)::prctl(PR_GET_NAME, thread, 0, 0, 0);
  const int nr = info->si_syscall;
  const char* path = opened_path(nr, context);
  if (path && quietly_refused(path)) {
    static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RAX] = -EACCES;  // the call's result
    return;
  }
  put(line, sizeof line, &len, "minihv: error: sandbox: a ");
  put(line, sizeof line, &len, name(t_class));
  put(line, sizeof line, &len, " thread (");
  put(line, sizeof line, &len, thread);
  put(line, sizeof line, &len, ") called ");
  put(line, sizeof line, &len, nr >= 0 && nr < kNames && g_names[nr][0] ? g_names[nr] : "an unknown call");
  put(line, sizeof line, &len, " (");
  put_number(line, sizeof line, &len, static_cast<unsigned long>(nr));
  put(line, sizeof line, &len, ")");
  if (path) {
    put(line, sizeof line, &len, " on ");
    put(line, sizeof line, &len, path);
  }
  if (nr == __NR_ioctl) {
    put(line, sizeof line, &len, " with request 0x");
    put_number(line, sizeof line, &len, ioctl_request(context), 16);
  }
  put(line, sizeof line, &len, ", which its list does not allow; the VMM ends\n");
  (void)!::write(STDERR_FILENO, line, len);
  ::syscall(SYS_exit_group, kViolationExit);
}

Status install_report() {
  struct sigaction sa {};
  sa.sa_sigaction = on_violation;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return Status::from_errno("sigaction(SIGSYS)");
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  pthread_sigmask(SIG_UNBLOCK, &sys, nullptr);
  return Status::ok();
}

struct Filter {
  scmp_filter_ctx ctx;
  explicit Filter(uint32_t deny) : ctx(seccomp_init(deny)) {}
  ~Filter() {
    if (ctx) seccomp_release(ctx);
  }
};

Status rule(scmp_filter_ctx ctx, uint32_t action, const char* call, std::initializer_list<scmp_arg_cmp> args = {}) {
  const int nr = seccomp_syscall_resolve_name(call);
  if (nr == __NR_SCMP_ERROR) return Status::ok();  // not on this kernel's architecture
  const int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()), args.begin());
  if (rc < 0) return Status::error(std::string("seccomp: a rule for ") + call + ": " + std::strerror(-rc));
  return Status::ok();
}

// One argument's test (libseccomp's SCMP_A* macros leave fields out, which clang warns of).
scmp_arg_cmp arg(unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) { return {index, op, a, b}; }

// Every ioctl of KVM's (the VM, vCPU and system fds), by the type byte of its request: 0xAE is
// linux/kvm.h's alone (the kernel's ioctl-number.rst), and a rarely walked path (restoring a
// vCPU's state for a migration that failed) needs no request of its own here.
constexpr scmp_datum_t kIoctlTypeMask = 0xff00;
constexpr scmp_datum_t kKvmIoctlType = static_cast<scmp_datum_t>(KVMIO) << 8;

// Each ioctl ending the VMM otherwise: a VM's tap queues, offloads and attachment (changed as the
// guest sets its NIC's features), a disk's size and write-zeroes on a block device, and what libc
// asks of a terminal or socket (isatty(), a console in raw mode, non-blocking). A terminal's
// TIOCSTI, an interface's SIOCSIF*, a loop device's LOOP_* and every other device's are refused.
constexpr unsigned long kIoctls[] = {
    TUNSETIFF, TUNSETQUEUE, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNGETIFF, TUNGETVNETHDRSZ,  // a tap
    BLKGETSIZE64, BLKZEROOUT,                                                            // a disk
    TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, FIONBIO, FIONREAD,                     // libc's
};

Status add_ioctls(scmp_filter_ctx ctx) {
  MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "ioctl", {arg(1, SCMP_CMP_MASKED_EQ, kIoctlTypeMask, kKvmIoctlType)}));
  for (unsigned long request : kIoctls)
    MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "ioctl", {arg(1, SCMP_CMP_MASKED_EQ, kIoctlRequestMask, request)}));
  return Status::ok();
}

// The calls every list allows only with some arguments.
Status add_conditional(scmp_filter_ctx ctx, ThreadClass c) {
  const bool narrow = c == ThreadClass::kVcpu || c == ThreadClass::kDevice;
  MINIHV_TRY(add_ioctls(ctx));
  // Signals go to this process's own threads only (a vCPU kick, the violation report).
  MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "tgkill", {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()))}));
  if (narrow) {
    // No new executable memory in a thread the guest drives.
    MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "mmap", {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)}));
    MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "mprotect", {arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)}));
    MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "prctl", {arg(0, SCMP_CMP_EQ, PR_SET_NAME)}));
    MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "prctl", {arg(0, SCMP_CMP_EQ, PR_GET_NAME)}));
    return Status::ok();
  }
  MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "mmap"));
  MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "mprotect"));
  MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "prctl"));
  MINIHV_TRY(rule(ctx, SCMP_ACT_ALLOW, "clone", {arg(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)}));
  MINIHV_TRY(rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3"));
  return Status::ok();
}

Status load(ThreadClass c, bool all_threads) {
  Filter f(SCMP_ACT_TRAP);
  if (!f.ctx) return Status::error("seccomp_init failed");
  for (const std::string& call : allowed(c)) MINIHV_TRY(rule(f.ctx, SCMP_ACT_ALLOW, call.c_str()));
  MINIHV_TRY(add_conditional(f.ctx, c));
  // no_new_privs is the caller's (minihv run sets it first); libseccomp must not set it again
  // silently, and TSYNC gives the control list to every thread at once.
  (void)seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_NNP, 0);
  // A binary tree of syscall numbers, not a linear list: calls allowed only with some arguments
  // (mmap, mprotect, prctl, tgkill) are not in the kernel's cache of always-allowed calls.
  (void)seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (all_threads) {
    const int rc = seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc < 0) return Status::error(std::string("seccomp: TSYNC: ") + std::strerror(-rc));
  }
  const int rc = seccomp_load(f.ctx);
  if (rc < 0)
    return Status::error(std::string("seccomp: loading the ") + name(c) + " list: " + std::strerror(-rc) +
                         (rc == -EACCES ? " (no_new_privs is not set)" : ""));
  t_class = c;
  return Status::ok();
}

Starter* g_starter = nullptr;  // guarded by g_starter_mu
std::mutex g_starter_mu;

}  // namespace

const char* name(ThreadClass c) {
  switch (c) {
    case ThreadClass::kControl: return "control";
    case ThreadClass::kVcpu: return "vcpu";
    case ThreadClass::kDevice: return "device";
    case ThreadClass::kMigration: return "migration";
  }
  return "?";
}

const std::vector<std::string>& allowed(ThreadClass c) {
  static const std::vector<std::string> every = join(kEveryThread, kSanitizerExtra);
  static const std::vector<std::string> control = join(every, kControlExtra);
  static const std::vector<std::string> migration = join(every, kMigrationExtra);
  switch (c) {
    case ThreadClass::kControl: return control;
    case ThreadClass::kMigration: return migration;
    case ThreadClass::kVcpu:
    case ThreadClass::kDevice: break;
  }
  return every;
}

// The thread outside() hands work to: control class, made at enable(), joined by ~Session.
struct Starter {
  std::mutex mu;
  std::condition_variable cv;
  const std::function<void()>* work = nullptr;  // the one job being asked for, or none
  uint64_t done = 0;                             // jobs finished, so a caller knows its own ended
  bool ending = false;
  std::mutex callers;  // one job at a time
  std::thread thread;

  void loop() {
    pthread_setname_np(pthread_self(), "sandbox-start");
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return work || ending; });
      if (!work) return;
      (*work)();
      work = nullptr;
      ++done;
      cv.notify_all();
    }
  }
  void run(const std::function<void()>& job) {
    std::lock_guard one(callers);
    std::unique_lock lock(mu);
    work = &job;
    const uint64_t mine = done + 1;
    cv.notify_all();
    cv.wait(lock, [&] { return done >= mine; });
  }
};

Result<std::unique_ptr<Session>> Session::enable() {
  if (g_enabled.load()) return Status::error("the sandbox is already on");
  resolve_names();
  MINIHV_TRY(install_report());
  MINIHV_TRY(load(ThreadClass::kControl, true));
  std::unique_ptr<Session> s(new Session());
  s->starter_ = std::make_unique<Starter>();
  s->starter_->thread = std::thread([p = s->starter_.get()] { p->loop(); });
  {
    std::lock_guard lock(g_starter_mu);
    g_starter = s->starter_.get();
  }
  g_enabled.store(true);
  return s;
}

Session::~Session() {
  {
    std::lock_guard lock(g_starter_mu);
    g_starter = nullptr;
  }
  {
    std::lock_guard lock(starter_->mu);
    starter_->ending = true;
  }
  starter_->cv.notify_all();
  starter_->thread.join();
}

bool enabled() { return g_enabled.load(); }

Status enter(ThreadClass c) {
  if (!g_enabled.load()) return Status::ok();
  return load(c, false);
}

void outside(const std::function<void()>& work) {
  std::unique_lock lock(g_starter_mu);
  if (!g_starter) {
    lock.unlock();
    work();
    return;
  }
  // Held while the job runs: ~Session waits for it rather than pulling the thread away under it.
  g_starter->run(work);
}

}  // namespace minihv::sandbox
