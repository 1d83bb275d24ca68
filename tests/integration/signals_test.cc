// A minihv process is not ended by a peer closing its end: a write to a closed pipe or socket is an
// error the caller handles (EPIPE), never SIGPIPE — here, the reader of a VM's console on stdout.
#include <gtest/gtest.h>

#include <signal.h>

#include <thread>

#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

// The VM's uptime in seconds from its control socket, or -1 when it does not answer.
double uptime_s(const std::string& api) {
  auto r = api_call(api, {{"cmd", "status"}}, 2000);
  return r && r->is_object() && r->contains("uptime_ms") ? (*r)["uptime_ms"].get<double>() / 1000 : -1;
}

TEST(Signals, AVmWhoseConsoleReaderWentAwayKeepsRunning) {
  TempDir d;
  const std::string api = d.file("api.sock");
  // `head` takes the first console line and exits: every later heartbeat (one a second) meets a
  // closed pipe.
  VmProcess vm({"run", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "64M", "--api", api}, {},
               {"bash", "-c", "\"$@\" | head -n 1", "console-reader"});
  ASSERT_TRUE(vm.wait_line(".", 30s)) << vm.stderr_text();
  double up = -1;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline && (up = uptime_s(api)) < 4) std::this_thread::sleep_for(200ms);
  EXPECT_GE(up, 4) << "the VM ended after its console's reader went away\n" << vm.stderr_text();
  EXPECT_TRUE(api_call(api, {{"cmd", "stop"}}, 5000));
  EXPECT_EQ(vm.wait_exit(30s), 0) << vm.stderr_text();
}

}  // namespace
}  // namespace minihv::test
