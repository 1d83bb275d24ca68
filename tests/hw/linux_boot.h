// tests/hw/linux_boot.h — Debian's kernel booted under minihv in the hw lane, up to a line its init
// prints, with one more try when the lane lost the boot.
//
// The lane is L2 under L1's KVM under QEMU TCG's emulated SVM. About one boot in ten or twenty
// there is lost early — a triple fault before the kernel's first mapping is set up, or a console that
// falls silent for good — at points that differ from boot to boot, and the same kernel and minihv
// boot every time on the next try. Neither has been seen where L1 is not emulated. So a boot
// that ends in a triple fault, or whose console stays silent for kSilence before the line, is
// started again, up to kBootTries in all, and says so on stderr ("[ retry ]", with the lost
// boot's last lines); a loss on the last try, any other exit, or the line not coming within
// `limit` fails the test as before. (Two tries were not enough: at ~1 loss in 10 boots and a
// dozen boots per lane run, a CI run lost the same test's boot twice in a row.)
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "tests/harness/harness.h"

namespace minihv::test {

struct LinuxBoot {
  std::unique_ptr<VmProcess> vm;  // the last try's process (never null)
  bool ready = false;             // its console printed the line
};

inline constexpr std::chrono::seconds kSilence{45};
inline constexpr int kBootTries = 3;

// `start` makes the VM process (again, for the second try: what it needs afresh, e.g. an API
// socket path, it makes itself). `ready`: a regex as VmProcess::wait_line takes.
LinuxBoot boot_linux(const std::function<std::unique_ptr<VmProcess>()>& start, const std::string& ready,
                     std::chrono::seconds limit);

}  // namespace minihv::test
