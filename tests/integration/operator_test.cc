// What an operator meets: a refused command changes nothing that something live depends on, and
// every command reports a failure the same way (docs/cli.md "Conventions").
#include <gtest/gtest.h>

#include <sys/stat.h>

#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

void expect_usage_error(const MinihvRun& o, const std::string& must_say) {
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_EQ(o.err.rfind("minihv: error: ", 0), 0u) << o.err;
  EXPECT_NE(o.err.find(must_say), std::string::npos) << "stderr should mention '" << must_say << "':\n" << o.err;
}

TEST(Operator, ASecondVmRefusedOnASocketInUseLeavesTheFirstOneReachable) {
  TempDir dir;
  const std::string sock = dir.file("a.sock");
  VmProcess first({"run", "--kernel", testguest_elf(), "--mem", "64M", "--api", sock});
  ASSERT_TRUE(first.wait_line("^HB cpu=0 seq=1 ", 20s)) << first.stderr_text();
  expect_usage_error(run_minihv({"run", "--kernel", testguest_elf(), "--mem", "64M", "--api", sock}), "in use");
  auto st = api_call(sock, {{"cmd", "status"}});
  ASSERT_TRUE(st) << "the first VM's socket is gone: " << st.message();
  EXPECT_EQ(st->value("state", ""), "running");
  ASSERT_TRUE(api_call(sock, {{"cmd", "stop"}}));
  EXPECT_EQ(first.wait_exit(20s).value_or(-1), 0);
}

TEST(Operator, AnUnknownCommandIsNamedWithWhatThereIs) {
  const MinihvRun top = run_minihv({"bogus"});
  expect_usage_error(top, "'minihv bogus' is not a command");
  EXPECT_NE(top.err.find("cluster"), std::string::npos) << top.err;
  expect_usage_error(run_minihv({"cluster", "frob"}), "'minihv cluster frob' is not a command");
  expect_usage_error(run_minihv({"volume", "disk"}), "'minihv volume disk' needs a command: create");
}

TEST(Operator, VersionIsPrinted) {
  const MinihvRun o = run_minihv({"--version"});
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_EQ(o.out.rfind("minihv ", 0), 0u) << o.out;
}

TEST(Operator, OptionsOfACommandMayFollowItsSubcommand) {
  // -v after `run`: accepted, and the guest runs to its own power-off (exit 0).
  VmProcess vm({"run", "--kernel", testguest_elf(), "--mem", "64M", "--cmdline", "secs=1", "-v"});
  EXPECT_EQ(vm.wait_exit(30s).value_or(-1), 0) << vm.stderr_text();
  // --node and --key after `status`: the address is the one given, not $MINIHV_NODE's default.
  TempDir d;
  ASSERT_EQ(run_minihv({"cluster", "init-key", "--key", d.file("cluster.key")}).rc, 0);
  const MinihvRun st = run_minihv({"cluster", "status", "--node", "127.0.0.1:1", "--key", d.file("cluster.key")});
  EXPECT_EQ(st.rc, 1) << st.err;
  EXPECT_NE(st.err.find("127.0.0.1:1"), std::string::npos) << st.err;
}

}  // namespace
}  // namespace minihv::test
