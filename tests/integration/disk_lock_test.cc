// Raw disk images are locked (vmm/devices/image_lock.h): a second `minihv run` on an image in use
// is refused naming the first, and a live migration on one host hands the lock to the destination.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "tests/harness/harness.h"
#include "vmm/devices/image_lock.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> run_args(const std::string& api, const std::string& disk) {
  return {"run", "--mem", "256M", "--cpus", "1", "--api", api, "--disk", disk};
}

std::unique_ptr<VmProcess> boot(const std::string& api, const std::string& disk) {
  auto a = run_args(api, disk);
  a.insert(a.end(), {"--kernel", testguest_elf(), "--cmdline", "disk"});
  auto vm = std::make_unique<VmProcess>(a);
  EXPECT_TRUE(vm->wait_line("^HB cpu=0 seq=1 ", 30s)) << vm->stdout_text() << vm->stderr_text();
  return vm;
}

std::unique_ptr<VmProcess> incoming(const std::string& api, const std::string& disk, int port,
                                    std::vector<std::string> env = {}) {
  auto a = run_args(api, disk);
  a.insert(a.begin(), "-v");
  a.insert(a.end(), {"--incoming", "127.0.0.1:" + std::to_string(port)});
  auto vm = std::make_unique<VmProcess>(a, std::move(env));
  EXPECT_TRUE(vm->wait_stderr("waiting for a migrating VM", 20s)) << vm->stderr_text();
  return vm;
}

// Who holds an OFD lock on `path` now: "pid N, CMDLINE", or "".
std::string holder(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return image_lock_holder(st.st_dev, st.st_ino);
}

std::string pid_of(const VmProcess& vm) { return "pid " + std::to_string(vm.pid()) + ", "; }

TEST(DiskLock, ASecondRunOnAnImageInUseIsRefusedNamingTheFirst) {
  TempDir dir;
  const std::string img = dir.file("disk.img");
  make_image(img, 64 << 20);
  auto first = boot(dir.file("a.sock"), img);
  EXPECT_EQ(holder(img).rfind(pid_of(*first), 0), 0u) << holder(img);
  auto a = run_args(dir.file("b.sock"), img);
  a.insert(a.end(), {"--kernel", testguest_elf(), "--cmdline", "disk"});
  VmProcess second(a);
  EXPECT_EQ(second.wait_exit(30s), 2) << second.stderr_text();
  const std::string want = "minihv: error: --disk " + img + ": in use by another process (" + pid_of(*first);
  EXPECT_NE(second.stderr_text().find(want), std::string::npos) << second.stderr_text();
  EXPECT_NE(second.stderr_text().find("minihv run"), std::string::npos) << "the holder's command line";
  const size_t seen = first->lines_matching("^HB cpu=0 ").size();
  ASSERT_TRUE(first->wait_line("^HB cpu=0 seq=" + std::to_string(seen + 2) + " ", 30s))
      << "the first VM must keep running:\n" << first->stdout_text() << first->stderr_text();
  EXPECT_TRUE(first->lines_matching("errs=[1-9]|ioerr|CORRUPT|PANIC").empty()) << first->stdout_text();
  first->kill(SIGTERM);
  EXPECT_EQ(first->wait_exit(20s), 0) << first->stderr_text();
  EXPECT_EQ(holder(img), "") << "a VM that ended holds no lock";
}

// Both ends of a move on one host open the same image: the destination without the lock, taking
// it once the source, which had it until the ACK, has let go.
TEST(DiskLock, AMigrationOnOneHostHandsTheLockToTheDestination) {
  TempDir dir;
  const std::string img = dir.file("disk.img"), src_api = dir.file("src.sock"), dst_api = dir.file("dst.sock");
  make_image(img, 64 << 20);
  auto src = boot(src_api, img);
  const int port = free_port();
  auto dstp = incoming(dst_api, img, port);
  VmProcess& dst = *dstp;
  EXPECT_EQ(holder(img).rfind(pid_of(*src), 0), 0u) << "the source keeps its lock while the destination waits";
  auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(r.exit, 0) << r.stderr_text << "\n" << r.json.dump(2) << "\ndestination:\n" << dst.stderr_text();
  EXPECT_EQ(src->wait_exit(20s), 0) << src->stderr_text();
  ASSERT_TRUE(dst.wait_line("^HB cpu=0 seq=", 20s)) << dst.stdout_text() << dst.stderr_text();
  EXPECT_EQ(holder(img).rfind(pid_of(dst), 0), 0u) << "the destination should hold the lock: '" << holder(img)
                                                    << "'\n" << dst.stderr_text();
  EXPECT_EQ(dst.stderr_text().find("image lock is still refused"), std::string::npos) << dst.stderr_text();
  VmProcess third([&] {
    auto t = run_args(dir.file("c.sock"), img);
    t.insert(t.end(), {"--kernel", testguest_elf(), "--cmdline", "disk"});
    return t;
  }());
  EXPECT_EQ(third.wait_exit(30s), 2) << third.stderr_text();
  EXPECT_NE(third.stderr_text().find("in use by another process (" + pid_of(dst)), std::string::npos)
      << third.stderr_text();
  dst.kill(SIGTERM);
  EXPECT_EQ(dst.wait_exit(20s), 0) << dst.stderr_text();
}

// The destination refuses COMMIT: the VM resumes at the source, which never let go of the lock.
TEST(DiskLock, AFailedMigrationLeavesTheSourceHoldingTheLock) {
  TempDir dir;
  const std::string img = dir.file("disk.img"), src_api = dir.file("src.sock");
  make_image(img, 64 << 20);
  auto src = boot(src_api, img);
  const int port = free_port();
  auto dst = incoming(dir.file("dst.sock"), img, port, {"MINIHV_MIGRATE_TEST_REFUSE_COMMIT=1"});
  auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port));
  EXPECT_NE(r.exit, 0) << r.json.dump(2);
  EXPECT_TRUE(dst->wait_exit(30s)) << dst->stderr_text();
  const size_t seen = src->lines_matching("^HB cpu=0 ").size();
  ASSERT_TRUE(src->wait_line("^HB cpu=0 seq=" + std::to_string(seen + 1) + " ", 30s))
      << "the VM must go on at the source:\n" << src->stdout_text() << src->stderr_text();
  EXPECT_EQ(holder(img).rfind(pid_of(*src), 0), 0u) << "'" << holder(img) << "'";
  src->kill(SIGTERM);
  EXPECT_EQ(src->wait_exit(20s), 0) << src->stderr_text();
}

}  // namespace
}  // namespace minihv::test
