// What the seccomp sandbox (common/sandbox.h) adds to the calls a VMM's I/O path makes: a device
// thread's eventfd round trip (the guest's notify in, the irqfd out), a 4 KiB pwrite, a vCPU exit's
// ioctl(KVM_RUN) and an mmap (calls allowed only with arguments, so the kernel's cache of
// always-allowed calls does not cover them). Each measurement runs in a child process, with the
// sandbox off or with a device thread's filters (control list, then device list, as in a `minihv
// run`); the time per call is the child's own clock.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <thread>

#include "common/sandbox.h"

namespace minihv::sandbox {
namespace {

constexpr int kCallsPerChild = 200000;

// Runs `call` kCallsPerChild times in a child (sandboxed or not); seconds per call, or < 0.
double seconds_per_call(bool sandboxed, const std::function<void()>& call) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    double per = -1;
    std::thread device([&] {
      if (sandboxed) {
        if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return;
        static auto session = Session::enable();  // lives until _exit
        if (!session || !enter(ThreadClass::kDevice).is_ok()) return;
      }
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < kCallsPerChild; ++i) call();
      per = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kCallsPerChild;
    });
    device.join();
    (void)!::write(pipefd[1], &per, sizeof per);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  double per = -1;
  if (::read(pipefd[0], &per, sizeof per) != sizeof per) per = -1;
  ::close(pipefd[0]);
  ::waitpid(pid, nullptr, 0);
  return per;
}

void measure(benchmark::State& state, const std::function<void()>& call) {
  const bool sandboxed = state.range(0) != 0;
  for (auto _ : state) {
    const double per = seconds_per_call(sandboxed, call);
    if (per < 0) {
      state.SkipWithError("the child could not measure (sandbox refused?)");
      return;
    }
    state.SetIterationTime(per);
  }
  state.SetLabel(sandboxed ? "device thread, sandboxed" : "no sandbox");
}

void BM_EventfdRoundTrip(benchmark::State& state) {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  measure(state, [fd] {
    uint64_t v = 1;
    (void)!::write(fd, &v, sizeof v);
    (void)!::read(fd, &v, sizeof v);
  });
  ::close(fd);
}
BENCHMARK(BM_EventfdRoundTrip)->Arg(0)->Arg(1)->UseManualTime()->Iterations(5);

void BM_Pwrite4k(benchmark::State& state) {
  char path[] = "/tmp/minihv-sandbox-bench-XXXXXX";
  const int fd = ::mkstemp(path);
  ::unlink(path);
  static char block[4096];
  measure(state, [fd] { (void)!::pwrite(fd, block, sizeof block, 0); });
  ::close(fd);
}
BENCHMARK(BM_Pwrite4k)->Arg(0)->Arg(1)->UseManualTime()->Iterations(5);

void BM_MmapMunmap(benchmark::State& state) {
  measure(state, [] {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) ::munmap(p, 4096);
  });
}
BENCHMARK(BM_MmapMunmap)->Arg(0)->Arg(1)->UseManualTime()->Iterations(5);

// A vCPU exit's own call: ioctl(KVM_RUN), allowed by request, so the filter runs for each. On an
// eventfd the kernel answers ENOTTY at once: what is left is the call and its filters.
void BM_IoctlKvmRun(benchmark::State& state) {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  measure(state, [fd] { (void)!::ioctl(fd, KVM_RUN, 0); });
  ::close(fd);
}
BENCHMARK(BM_IoctlKvmRun)->Arg(0)->Arg(1)->UseManualTime()->Iterations(5);

}  // namespace
}  // namespace minihv::sandbox
