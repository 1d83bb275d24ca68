// The VMM's seccomp sandbox (common/sandbox.h), in child processes of the test: each class's list
// refuses what code a guest took over would try (the process ends with kViolationExit and one line
// naming the thread's class and the call), and allows what the VMM's threads do.
#include "common/sandbox.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <linux/kvm.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/capped_file.h"
#include "common/uring.h"

namespace minihv {
namespace {

using sandbox::ThreadClass;

struct Ended {
  int exit_status = -1;  // -1: killed by a signal
  std::string err;
};

// Runs `body` in a forked child with the sandbox on (no_new_privs first, as minihv run does). The
// child exits 0 when `body` returns; a violation exits kViolationExit. _exit: no atexit handlers.
Ended in_sandboxed_child(const std::function<void()>& body) {
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(err[1], STDERR_FILENO);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(3);
    auto session = sandbox::Session::enable();
    if (!session) {
      (void)!::write(STDERR_FILENO, session.message().data(), session.message().size());
      ::_exit(4);
    }
    body();
    ::_exit(0);
  }
  ::close(err[1]);
  Ended e;
  char buf[512];
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0;) e.err.append(buf, static_cast<size_t>(n));
  ::close(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) e.exit_status = WEXITSTATUS(status);
  return e;
}

void enter_or_die(ThreadClass c) {
  if (!sandbox::enter(c).is_ok()) ::_exit(5);
}

// In a thread of class `c`, makes `call`: the process must end, naming `expected`.
void expect_refused(ThreadClass c, const std::string& what, const std::function<void()>& call,
                    const std::string& expected) {
  Ended e = in_sandboxed_child([&] {
    std::thread t([&] {
      enter_or_die(c);
      call();
    });
    t.join();
  });
  EXPECT_EQ(e.exit_status, sandbox::kViolationExit) << what << " in a " << sandbox::name(c) << " thread: " << e.err;
  EXPECT_NE(e.err.find(std::string("a ") + sandbox::name(c) + " thread"), std::string::npos) << e.err;
  EXPECT_NE(e.err.find("called " + expected + " ("), std::string::npos) << what << ": " << e.err;
}

void open_a_file() { (void)::open("/etc/hostname", O_RDONLY | O_CLOEXEC); }
void exec_a_program() {
  char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
  (void)::execve("/bin/true", argv, environ);
}
void trace_init() { (void)::ptrace(PTRACE_ATTACH, 1, nullptr, nullptr); }
void open_a_socket() { (void)::socket(AF_INET, SOCK_STREAM, 0); }
void start_a_process() {
  if (::fork() == 0) ::_exit(0);
}

TEST(Sandbox, AVcpuThreadCannotOpenExecTraceConnectOrFork) {
  expect_refused(ThreadClass::kVcpu, "open", open_a_file, "openat");
  Ended e = in_sandboxed_child([] {
    std::thread t([] {
      enter_or_die(ThreadClass::kVcpu);
      open_a_file();
    });
    t.join();
  });
  EXPECT_NE(e.err.find("called openat (257) on /etc/hostname, which"), std::string::npos)
      << "the line names the file: " << e.err;
  expect_refused(ThreadClass::kVcpu, "exec", exec_a_program, "execve");
  expect_refused(ThreadClass::kVcpu, "ptrace", trace_init, "ptrace");
  expect_refused(ThreadClass::kVcpu, "socket", open_a_socket, "socket");
  expect_refused(ThreadClass::kVcpu, "fork", start_a_process, "clone");
}

TEST(Sandbox, DeviceAndMigrationThreadsCannotOpenFilesOrMakeSockets) {
  for (ThreadClass c : {ThreadClass::kDevice, ThreadClass::kMigration}) {
    expect_refused(c, "open", open_a_file, "openat");
    expect_refused(c, "socket", open_a_socket, "socket");
    expect_refused(c, "exec", exec_a_program, "execve");
  }
}

TEST(Sandbox, EvenTheControlThreadCannotExecTraceOrFork) {
  expect_refused(ThreadClass::kControl, "exec", exec_a_program, "execve");
  expect_refused(ThreadClass::kControl, "ptrace", trace_init, "ptrace");
  expect_refused(ThreadClass::kControl, "fork", start_a_process, "clone");
}

TEST(Sandbox, AVcpuThreadCannotMakeMemoryExecutable) {
  expect_refused(
      ThreadClass::kVcpu, "mmap PROT_EXEC",
      [] { (void)::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }, "mmap");
}

// ioctl is allowed by request: a terminal's TIOCSTI (typing into the terminal of whoever started the
// VMM), an interface's SIOCSIFFLAGS or a loop device's LOOP_CLR_FD ends the VMM, and the line names
// the request.
TEST(Sandbox, AnIoctlOutsideTheVmmsRequestsIsRefusedByRequest) {
  const auto on_stderr = [](unsigned long request) {
    return [request] {
      char c = 'x';
      (void)::ioctl(STDERR_FILENO, request, &c);
    };
  };
  expect_refused(ThreadClass::kVcpu, "TIOCSTI", on_stderr(TIOCSTI), "ioctl");
  expect_refused(ThreadClass::kDevice, "SIOCSIFFLAGS", on_stderr(SIOCSIFFLAGS), "ioctl");
  expect_refused(ThreadClass::kControl, "LOOP_CLR_FD", on_stderr(0x4C01), "ioctl");
  Ended e = in_sandboxed_child([&] {
    std::thread vcpu([&] {
      enter_or_die(ThreadClass::kVcpu);
      on_stderr(TIOCSTI)();
    });
    vcpu.join();
  });
  EXPECT_NE(e.err.find("called ioctl (16) with request 0x5412, which"), std::string::npos) << e.err;
}

// ...and what the VMM asks goes through: KVM's requests (any: on a fd that is not KVM's the kernel
// answers ENOTTY), a tap's, and libc's isatty(); upper bits the kernel ignores do not matter.
TEST(Sandbox, KvmTapAndTerminalRequestsGoThrough) {
  Ended e = in_sandboxed_child([] {
    const int efd = ::eventfd(0, EFD_CLOEXEC);
    std::thread vcpu([efd] {
      enter_or_die(ThreadClass::kVcpu);
      if (::ioctl(efd, KVM_RUN, 0) != -1 || errno != ENOTTY) ::_exit(6);
      kvm_regs regs{};
      if (::ioctl(efd, KVM_GET_REGS, &regs) != -1 || errno != ENOTTY) ::_exit(7);
      ifreq ifr{};
      if (::ioctl(efd, TUNGETIFF, &ifr) != -1) ::_exit(8);
      if (::isatty(efd)) ::_exit(9);
      if (::ioctl(efd, KVM_GET_REGS | (1ul << 40), &regs) != -1 || errno != ENOTTY) ::_exit(10);
    });
    vcpu.join();
  });
  EXPECT_EQ(e.exit_status, 0) << e.err;
}

// What the VMM's threads do goes on: a vCPU thread asks outside() for a device thread with a ring
// and an eventfd (as DRIVER_OK does), the device thread waits on the ring, memory and locks work.
TEST(Sandbox, TheVmmsOwnWorkGoesOnInsideIt) {
  Ended e = in_sandboxed_child([] {
    std::thread vcpu([] {
      enter_or_die(ThreadClass::kVcpu);
      std::mutex mu;
      std::lock_guard lock(mu);
      void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) ::_exit(6);
      ::munmap(m, 1 << 20);
      Uring ring;
      int efd = -1;
      std::jthread device;
      sandbox::outside([&] {
        if (!ring.init(8).is_ok()) ::_exit(7);
        efd = ::eventfd(0, EFD_CLOEXEC);
        device = std::jthread([&] {
          enter_or_die(ThreadClass::kDevice);
          uint64_t v = 0;
          io_uring_prep_read(ring.sqe(), efd, &v, sizeof v, 0);
          if (!ring.submit_and_wait(1).is_ok() || v != 1) ::_exit(8);
        });
      });
      const uint64_t one = 1;
      if (::write(efd, &one, sizeof one) != sizeof one) ::_exit(9);
      device.join();
      ::close(efd);
    });
    vcpu.join();
  });
  EXPECT_EQ(e.exit_status, 0) << e.err;
}

// glibc opens a file or two of its own, once, on whatever thread gets there first: malloc reads
// /proc/sys/vm/overcommit_memory when a thread's heap shrinks. On a vCPU thread that must not end
// the VMM (it did, in migration threads): such opens are refused quietly and glibc goes on.
TEST(Sandbox, GlibcsOwnLazyOpensAreRefusedQuietly) {
  Ended e = in_sandboxed_child([] {
    std::thread vcpu([] {
      enter_or_die(ThreadClass::kVcpu);
      std::vector<std::unique_ptr<char[]>> pieces;  // a heap of this thread's own, grown and shrunk
      for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 8192; ++i) pieces.push_back(std::make_unique<char[]>(1000));
        pieces.clear();
      }
      if (::open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC) != -1 || errno != EACCES) ::_exit(6);
    });
    vcpu.join();
  });
  EXPECT_EQ(e.exit_status, 0) << e.err;
}

// seccomp does not see what a ring does: minihv's rings take only the operations minihv submits,
// so a thread the guest took over gets no open through the disk's ring either.
TEST(Sandbox, ARingRefusesAnOpenButTakesAReadAndAWrite) {
  Uring ring;
  ASSERT_TRUE(ring.init(8).is_ok());
  std::map<uint64_t, int32_t> res;
  auto one = [&](uint64_t tag, const std::function<void(io_uring_sqe*)>& prep) {
    io_uring_sqe* sqe = ring.sqe();
    prep(sqe);
    sqe->user_data = tag;
    (void)ring.submit_and_wait(1);
    ring.reap([&](uint64_t t, int32_t r) { res[t] = r; });
  };
  one(1, [](io_uring_sqe* s) { io_uring_prep_openat(s, AT_FDCWD, "/etc/hostname", O_RDONLY, 0); });
  EXPECT_EQ(res.at(1), -EACCES) << "the ring opened a file";
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  char out[] = "x", in[2] = {};
  one(2, [&](io_uring_sqe* s) { io_uring_prep_write(s, fds[1], out, 1, 0); });
  one(3, [&](io_uring_sqe* s) { io_uring_prep_read(s, fds[0], in, 1, 0); });
  EXPECT_EQ(res.at(2), 1) << "the ring did not write";
  EXPECT_EQ(res.at(3), 1) << "the ring did not read";
  EXPECT_EQ(in[0], 'x');
  ::close(fds[0]);
  ::close(fds[1]);
}

// A vCPU writes the console: the file rotates at its cap without opening or renaming anything.
TEST(Sandbox, AConsoleRotatesInsideAVcpuThread) {
  char tmpl[] = "/tmp/minihv-sandbox-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/console";
  Ended e = in_sandboxed_child([] {});  // the sandbox itself starts (this kernel has seccomp)
  ASSERT_EQ(e.exit_status, 0) << e.err;
  auto f = CappedFile::open(path, 100, CappedFile::Start::kTruncate);
  ASSERT_TRUE(f) << f.message();
  e = in_sandboxed_child([&] {
    std::thread vcpu([&] {
      enter_or_die(ThreadClass::kVcpu);
      f->write(std::string(100, 'a').data(), 100);
      f->write(std::string(30, 'b').data(), 30);
    });
    vcpu.join();
  });
  ASSERT_EQ(e.exit_status, 0) << e.err;
  std::ifstream now(path), before(path + ".1");
  std::string n((std::istreambuf_iterator<char>(now)), {}), b((std::istreambuf_iterator<char>(before)), {});
  EXPECT_EQ(b, std::string(100, 'a'));
  EXPECT_EQ(n, std::string(30, 'b'));
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace minihv
