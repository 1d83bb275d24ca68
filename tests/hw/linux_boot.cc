#include "tests/hw/linux_boot.h"

#include <signal.h>

#include <cstdio>

namespace minihv::test {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kPoll{1};

enum class Outcome { kReady, kLost, kFailed };

// Waits for `ready` (or the end of `limit`), watching for the two ways the lane loses a boot.
Outcome watch(VmProcess& vm, const std::string& ready, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  size_t seen = 0;
  auto last_output = Clock::now();
  while (Clock::now() < end) {
    if (vm.wait_line(ready, kPoll)) return Outcome::kReady;
    if (vm.wait_exit(std::chrono::milliseconds(0)))
      return vm.stderr_text().find("triple fault") != std::string::npos ? Outcome::kLost : Outcome::kFailed;
    const size_t now = vm.stdout_text().size();
    if (now != seen) {
      seen = now;
      last_output = Clock::now();
    } else if (Clock::now() - last_output >= kSilence) {
      return Outcome::kLost;
    }
  }
  return Outcome::kFailed;
}

}  // namespace

LinuxBoot boot_linux(const std::function<std::unique_ptr<VmProcess>()>& start, const std::string& ready,
                     std::chrono::seconds limit) {
  LinuxBoot b;
  for (int attempt = 1;; ++attempt) {
    b.vm = start();
    const Outcome o = watch(*b.vm, ready, limit);
    b.ready = o == Outcome::kReady;
    if (o != Outcome::kLost || attempt == kBootTries) return b;
    std::fprintf(stderr, "[ retry ] the lane lost boot %d of %d (%s); once more. Its console's end:\n%s\n%s\n",
                 attempt, kBootTries,
                 b.vm->stderr_text().find("triple fault") != std::string::npos ? "a triple fault"
                                                                               : "the console fell silent",
                 b.vm->stdout_tail(20).c_str(), b.vm->stderr_text().c_str());
    b.vm->kill(SIGKILL);
    (void)b.vm->wait_exit(std::chrono::seconds(10));
  }
}

}  // namespace minihv::test
