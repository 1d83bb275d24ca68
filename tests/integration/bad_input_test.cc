// Bad input: `minihv run` exits with status 2 and a message that names the problem.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include "tests/harness/harness.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

struct Case {
  const char* name;
  std::vector<std::string> args;
  std::string must_say;
};

void expect_usage_error(const std::vector<std::string>& args, const std::string& must_say) {
  VmProcess vm(args);
  auto rc = vm.wait_exit(30s);
  ASSERT_TRUE(rc) << "minihv did not exit";
  EXPECT_EQ(*rc, 2) << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find(must_say), std::string::npos)
      << "stderr should mention '" << must_say << "':\n" << vm.stderr_text();
  EXPECT_TRUE(vm.stdout_text().empty()) << vm.stdout_text();
}

TEST(BadInput, MissingKernel) {
  expect_usage_error({"run", "--kernel", "/nonexistent/vmlinuz"}, "/nonexistent/vmlinuz");
}

TEST(BadInput, NotAKernel) {
  TempDir dir;
  const std::string junk = dir.file("junk.bin");
  FILE* f = fopen(junk.c_str(), "w");
  ASSERT_TRUE(f);
  fputs("this is a text file, not a kernel\n", f);
  fclose(f);
  expect_usage_error({"run", "--kernel", junk}, "not a kernel");
}

TEST(BadInput, MemoryBeyondTheHost) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--mem", "100000G"}, "more than this host");
}

TEST(BadInput, ZeroCpus) { expect_usage_error({"run", "--kernel", testguest_elf(), "--cpus", "0"}, "--cpus"); }

TEST(BadInput, MalformedMemorySize) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--mem", "lots"}, "lots");
}

TEST(BadInput, UnreadableDisk) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--disk", "/nonexistent/disk.img"},
                     "/nonexistent/disk.img");
}

// --net: every part of the value is checked before anything starts, and the message names it.
TEST(BadInput, NetValuesNameTheirProblem) {
  const Case cases[] = {
      {"no tap", {"--net", "mac=52:54:00:00:00:01"}, "tap=NAME is required"},
      {"no value", {"--net", "tap"}, "want KEY=VALUE"},
      {"bad mac", {"--net", "tap=t0,mac=52:54:00:zz:00:01"}, "mac=52:54:00:zz:00:01: not a MAC address"},
      {"multicast mac", {"--net", "tap=t0,mac=01:00:5e:00:00:01"}, "multicast"},
      {"zero mac", {"--net", "tap=t0,mac=00:00:00:00:00:00"}, "all zeros"},
      {"no queues", {"--net", "tap=t0,queues=0"}, "queues=0: want 1 to 8 queue pairs"},
      {"too many queues", {"--net", "tap=t0,queues=9"}, "queues=9: want 1 to 8 queue pairs"},
      {"unknown key", {"--net", "tap=t0,vhost=on"}, "unknown option 'vhost'"},
      {"long name", {"--net", "tap=abcdefghijklmnop"}, "not an interface name"},
      {"slash", {"--net", "tap=a/b"}, "not an interface name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> args = {"run", "--kernel", testguest_elf()};
    args.insert(args.end(), c.args.begin(), c.args.end());
    expect_usage_error(args, c.must_say);
  }
}

TEST(BadInput, NetOnAnInterfaceThatIsNotATap) {
  // `lo` exists in every namespace and is no tap: attaching must fail with the tap's name.
  expect_usage_error({"run", "--kernel", testguest_elf(), "--net", "tap=lo"}, "tap lo: cannot attach");
}

TEST(BadInput, MoreDevicesThanWindows) {
  std::vector<std::string> args = {"run", "--kernel", testguest_elf()};
  for (int i = 0; i < 9; ++i) args.insert(args.end(), {"--net", "tap=mhvbad" + std::to_string(i)});
  expect_usage_error(args, "at most 8 disks and NICs");
}

TEST(BadInput, UnknownFlag) { expect_usage_error({"run", "--kernel", testguest_elf(), "--frobnicate"}, "frobnicate"); }

TEST(BadInput, MissingKernelFlag) { expect_usage_error({"run"}, "--kernel"); }

TEST(BadInput, TooLittleMemory) { expect_usage_error({"run", "--kernel", testguest_elf(), "--mem", "0"}, "16 MiB"); }

TEST(BadInput, MemoryNotInWholeHugePages) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--mem", "17M"}, "multiple of 2 MiB");
}

TEST(BadInput, EmptyDisk) {
  TempDir dir;
  const std::string empty = dir.file("empty.img");
  FILE* f = fopen(empty.c_str(), "w");
  ASSERT_TRUE(f);
  fclose(f);
  expect_usage_error({"run", "--kernel", testguest_elf(), "--disk", empty}, "empty");
}

TEST(BadInput, AMissingDiskNamesNoOptionThatDoesNotExist) {
  VmProcess vm({"run", "--kernel", testguest_elf(), "--disk", "/nonexistent/disk.img"});
  ASSERT_TRUE(vm.wait_exit(30s));
  EXPECT_EQ(vm.stderr_text().find("read-only option"), std::string::npos) << vm.stderr_text();
}

TEST(BadInput, ConsoleInAMissingDirectory) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--console", "/nonexistent/console.log"}, "--console");
}

TEST(BadInput, AConsoleCapThatIsNoSizeOrHasNoConsole) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--console", "/tmp/c.log", "--console-max", "12Q"},
                     "--console-max");
  expect_usage_error({"run", "--kernel", testguest_elf(), "--console-max", "1M"}, "--console");
}

TEST(BadInput, ApiSocketInAMissingDirectory) {
  expect_usage_error({"run", "--kernel", testguest_elf(), "--api", "/nonexistent/api.sock"}, "/nonexistent/api.sock");
}

TEST(BadInput, DecimalMemoryIsASize) {
  VmProcess vm({"run", "--kernel", testguest_elf(), "--mem", "0.25G"});
  ASSERT_TRUE(vm.wait_line("minihv-testguest: boot cpus=1 mem_mib=25[56] ", 20s)) << vm.stderr_text();
}

}  // namespace
}  // namespace minihv::test
