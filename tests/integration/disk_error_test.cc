// --disk ...,on-error=: the test guest's `disk` workload on an image whose filesystem (a tmpfs
// mounted here; the tests run as root) fills up under it.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kImageBytes = 8 << 20;  // sparse; the workload's ring (256 x 4 KiB) fits the tmpfs
constexpr uint64_t kFreeBytes = 64 << 10;  // left free: the guest acknowledges ~16 records, then fills it
constexpr const char* kNoSpace = "No space left on device";

// A 2 MiB tmpfs holding a sparse image and a filler file that leaves kFreeBytes.
class SmallFs {
public:
  SmallFs() : mounted_(::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=2M") == 0) {}
  ~SmallFs() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  std::string image() const { return dir_.file("disk.img"); }
  std::string filler() const { return dir_.file("filler"); }
  // Fills the filesystem, then gives kFreeBytes back.
  bool fill() {
    const int fd = ::open(filler().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    const std::vector<char> chunk(4096, 'f');
    off_t size = 0;
    for (ssize_t n; fd >= 0 && (n = ::write(fd, chunk.data(), chunk.size())) > 0;) size += n;
    const bool ok = fd >= 0 && size > static_cast<off_t>(kFreeBytes) &&
                    ::ftruncate(fd, size - static_cast<off_t>(kFreeBytes)) == 0;
    if (fd >= 0) ::close(fd);
    return ok;
  }

private:
  TempDir dir_;
  bool mounted_;
};

nlohmann::json call(const std::string& api, const std::string& cmd) {
  auto r = api_call(api, {{"cmd", cmd}});
  EXPECT_TRUE(r) << cmd << ": " << r.message();
  return r ? *r : nlohmann::json::object();
}

bool wait_state(const std::string& api, const std::string& state, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (call(api, "status").value("state", "") == state) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// The guest's write hits ENOSPC: the VM pauses and says why, the guest sees no error; space is
// freed, `resume` retries, the guest goes on; a restart finds every acknowledged record.
// The filled tmpfs with its image, and a socket path outside it.
class DiskOnError : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(fs.mounted()) << "cannot mount a tmpfs (the tests run as root)";
    make_image(fs.image(), kImageBytes);
    ASSERT_TRUE(fs.fill());
  }
  SmallFs fs;
  TempDir dir;
  const std::string api = dir.file("api.sock");
};

TEST_F(DiskOnError, AFullFilesystemPausesTheVmAndResumeGoesOn) {
  auto args = [&](const std::string& cmdline) {
    return std::vector<std::string>{"run", "--kernel", testguest_elf(), "--cmdline", cmdline, "--mem", "256M",
                                    "--disk", fs.image(), "--api", api};
  };
  long acked = -1;
  {
    VmProcess vm(args("disk"));
    ASSERT_TRUE(vm.wait_line("^DISK resume last=0 ", 20s)) << vm.stdout_text() << vm.stderr_text();
    ASSERT_TRUE(wait_state(api, "paused", 20s)) << vm.stdout_text() << vm.stderr_text();
    const nlohmann::json st = call(api, "status");
    const std::string why = st.value("paused_reason", "");
    EXPECT_NE(why.find("disk error: " + fs.image() + ": " + kNoSpace), std::string::npos) << st.dump();
    EXPECT_TRUE(vm.wait_stderr(kNoSpace, 5s)) << vm.stderr_text();
    EXPECT_FALSE(call(api, "pause").value("ok", true)) << "a paused VM cannot pause again";

    ASSERT_EQ(::unlink(fs.filler().c_str()), 0);
    EXPECT_TRUE(call(api, "resume").value("ok", false));
    EXPECT_EQ(call(api, "status").count("paused_reason"), 0u);
    ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=4 ", 30s)) << vm.stdout_text() << vm.stderr_text();
    acked = last_acknowledged(vm);
    EXPECT_GT(acked, static_cast<long>(kFreeBytes / 4096)) << "the guest must write past the full disk";
    EXPECT_EQ(call(api, "status").value("state", ""), "running");
    vm.kill(SIGKILL);  // only what was acknowledged may be counted on
    vm.wait_exit(10s);
    EXPECT_TRUE(vm.lines_matching("errs=[1-9]").empty()) << vm.stdout_text();
    EXPECT_TRUE(vm.lines_matching("^DISK ioerr").empty()) << "the guest saw an I/O error\n" << vm.stdout_text();
  }
  VmProcess vm(args("disk secs=3"));
  auto resume = vm.wait_line("^DISK resume last=\\d+", 20s);
  ASSERT_TRUE(resume) << vm.stdout_text() << vm.stderr_text();
  EXPECT_GE(std::stol(resume->substr(resume->find("last=") + 5)), acked) << "an acknowledged record was lost";
  ASSERT_EQ(vm.wait_exit(30s), 0) << vm.stdout_text() << vm.stderr_text();
  EXPECT_TRUE(vm.lines_matching("CORRUPT").empty()) << vm.stdout_text();
  EXPECT_FALSE(vm.lines_matching("^DONE cpu=0 errs=0").empty()) << vm.stdout_text();
}

// on-error=report: the guest's write fails (its workload says so) and the VM runs on.
TEST_F(DiskOnError, ReportHandsTheErrorToTheGuest) {
  VmProcess vm({"run", "--kernel", testguest_elf(), "--cmdline", "disk", "--mem", "256M", "--disk",
                fs.image() + ",on-error=report", "--api", api});
  ASSERT_TRUE(vm.wait_line("^DISK ioerr op=write ", 30s)) << vm.stdout_text() << vm.stderr_text();
  const nlohmann::json st = call(api, "status");
  EXPECT_EQ(st.value("state", ""), "running") << st.dump();
  EXPECT_EQ(st.count("paused_reason"), 0u) << st.dump();
}

TEST(DiskOnErrorValue, ABadValueIsRefused) {
  TempDir dir;
  make_image(dir.file("disk.img"), 1 << 20);
  const MinihvRun r = run_minihv({"run", "--kernel", testguest_elf(), "--disk", dir.file("disk.img") + ",on-error=pause"});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("minihv: error: --disk"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("on-error=pause: want stop or report"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace minihv::test
