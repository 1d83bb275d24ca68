// Issue 13, the operator's odds and ends with real processes: format --force never runs over a live
// lease holder and asks first; a failed format leaves nothing behind; a held disk cannot be removed;
// `cpuid compare` reads `cpuid show --json`; the advisory warning once a day; `run --incoming`
// takes its size from the source; every `migrate` failure says so on stderr (and in JSON).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "cpuid/cpuid.h"
#include "tests/harness/harness.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;


std::string read_file(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), {}};
}

bool contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// --- volume format --force, volume disk rm ------------------------------------------------------

class OperatorVolume : public ::testing::Test {
protected:
  void SetUp() override {
    MinihvRun f = run_minihv({"volume", "format", vol_, "--size", "256M", "--cluster", "lab"});
    ASSERT_EQ(f.rc, 0) << f.err;
    MinihvRun c = run_minihv({"volume", "disk", "create", vol_, "a", "--size", "16M"});
    ASSERT_EQ(c.rc, 0) << c.err;
  }
  // A VM writing to disk `a` (its lease renewed every 200 ms), up and running.
  std::unique_ptr<VmProcess> vm_on_disk_a() {
    auto vm = std::make_unique<VmProcess>(std::vector<std::string>{
        "run", "--kernel", testguest_elf(), "--cmdline", "disk", "--mem", "128M", "--disk", vol_ + ":a"});
    EXPECT_TRUE(vm->wait_line("^HB cpu=0 seq=2 ", 30s)) << vm->stdout_text() << vm->stderr_text();
    return vm;
  }
  nlohmann::json inspect() {
    MinihvRun r = run_minihv({"volume", "inspect", vol_, "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  MinihvRun force_format(std::vector<std::string> extra = {"--yes"}) {
    std::vector<std::string> a{"volume", "format", vol_, "--cluster", "other", "--force"};
    a.insert(a.end(), extra.begin(), extra.end());
    return run_minihv(a);
  }
  TempDir dir_;
  std::string vol_ = dir_.file("shared.vol");
};

// The data loss of issue 13: a forced format while a VM held a disk lease wiped the disk table.
TEST_F(OperatorVolume, ForceFormatIsRefusedWhileAVmHoldsADiskLease) {
  auto vm = vm_on_disk_a();
  MinihvRun r = force_format();
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "minihv: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, "disk a held by")) << r.err;
  EXPECT_TRUE(contains(r.err, "pid " + std::to_string(vm->pid()))) << r.err;
  const nlohmann::json j = inspect();
  EXPECT_EQ(j["cluster"], "lab") << "the volume must be untouched";
  EXPECT_EQ(j["disks"].size(), 1u);
  const long seq_before = static_cast<long>(vm->lines_matching("^HB cpu=0 ").size());
  EXPECT_TRUE(vm->wait_line("^HB cpu=0 seq=" + std::to_string(seq_before + 2) + " ", 20s))
      << "the VM must go on\n" << vm->stderr_text();
  vm->kill(SIGTERM);
  EXPECT_EQ(vm->wait_exit(20s), 0) << vm->stderr_text();
  MinihvRun after = force_format();
  EXPECT_EQ(after.rc, 0) << "released leases do not block: " << after.err;
  EXPECT_EQ(inspect()["cluster"], "other");
}

// A holder that died with its lease held (SIGKILL) stops renewing: after the dead timeout it
// blocks nothing.
TEST_F(OperatorVolume, StaleLeaseDoesNotBlockForceFormat) {
  auto vm = vm_on_disk_a();
  vm->kill(SIGKILL);
  vm->wait_exit(10s);
  EXPECT_EQ(inspect()["disks"][0]["lease"]["state"], "held") << "the killed VM leaves its lease held";
  MinihvRun r = force_format();
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(inspect()["cluster"], "other");
}

TEST_F(OperatorVolume, ForceFormatOfAVolumeWantsYesWithoutATerminal) {
  MinihvRun r = force_format({});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "minihv: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, "--yes")) << r.err;
  EXPECT_EQ(inspect()["cluster"], "lab");
  // Not a volume: --force alone overwrites a non-empty file, as before (nothing to confirm).
  const std::string junk = dir_.file("junk.img");
  make_image(junk, 64ull << 20);
  std::ofstream(junk, std::ios::in | std::ios::out) << "not a volume";
  MinihvRun j = run_minihv({"volume", "format", junk, "--cluster", "lab", "--force"});
  EXPECT_EQ(j.rc, 0) << j.err;
}

TEST_F(OperatorVolume, ForceFormatAsksOnATerminal) {
  auto ask = [&](const std::string& answer) {
    VmProcess p(VmProcess::WithTerminal{}, {"volume", "format", vol_, "--cluster", "other", "--force"});
    EXPECT_TRUE(p.wait_stderr("[y/N]", 20s)) << p.stderr_text();
    p.type(answer + "\n");
    auto rc = p.wait_exit(20s);
    return std::pair{rc.value_or(-1), p.stderr_text()};
  };
  auto [no_rc, no_err] = ask("n");
  EXPECT_EQ(no_rc, 1) << no_err;
  EXPECT_TRUE(contains(no_err, "not confirmed")) << no_err;
  EXPECT_EQ(inspect()["cluster"], "lab");
  auto [yes_rc, yes_err] = ask("y");
  EXPECT_EQ(yes_rc, 0) << yes_err;
  EXPECT_EQ(inspect()["cluster"], "other");
}

TEST_F(OperatorVolume, FailedFormatLeavesNoFileAndTouchesNoOtherFile) {
  const std::string fresh = dir_.file("fresh.vol");
  MinihvRun small = run_minihv({"volume", "format", fresh, "--size", "1M", "--cluster", "lab"});
  EXPECT_EQ(small.rc, 2) << small.err;
  EXPECT_TRUE(contains(small.err, "too small")) << small.err;
  EXPECT_FALSE(std::filesystem::exists(fresh)) << "a failed format must leave no file it created";
  MinihvRun retry = run_minihv({"volume", "format", fresh, "--size", "64M", "--cluster", "lab"});
  EXPECT_EQ(retry.rc, 0) << retry.err;
  // A file that was there keeps its bytes and its size.
  const std::string mine = dir_.file("mine.txt");
  std::ofstream(mine) << "precious";
  MinihvRun forced = run_minihv({"volume", "format", mine, "--size", "1M", "--cluster", "lab", "--force"});
  EXPECT_EQ(forced.rc, 2) << forced.err;
  EXPECT_EQ(read_file(mine), "precious");
  // A live volume refused with --size: not resized either.
  auto vm = vm_on_disk_a();
  MinihvRun grow = force_format({"--yes", "--size", "512M"});
  EXPECT_EQ(grow.rc, 1) << grow.err;
  EXPECT_EQ(std::filesystem::file_size(vol_), 256ull << 20);
}

TEST_F(OperatorVolume, DiskRmOfAHeldDiskIsRefusedNamingTheHolder) {
  auto vm = vm_on_disk_a();
  MinihvRun r = run_minihv({"volume", "disk", "rm", vol_, "a"});
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "minihv: error: ")) << r.err;
  EXPECT_TRUE(contains(r.err, "pid " + std::to_string(vm->pid()))) << r.err;
  EXPECT_EQ(inspect()["disks"].size(), 1u);
}

// --- cpuid compare reads cpuid show --json -------------------------------------------------------

TEST(OperatorCpuid, CompareReadsShowJson) {
  TempDir dir;
  MinihvRun show = run_minihv({"cpuid", "show", "--model", "x86-64-v2", "--json"});
  ASSERT_EQ(show.rc, 0) << show.err;
  std::ofstream(dir.file("guest.json")) << show.out;
  MinihvRun cmp = run_minihv({"cpuid", "compare", "--guest", dir.file("guest.json"), "--json"});
  EXPECT_EQ(cmp.rc, 0) << cmp.out << cmp.err;
  auto j = nlohmann::json::parse(cmp.out, nullptr, false);
  EXPECT_EQ(j.value("compatible", false), true) << cmp.out;
  // Its own table as the host: the guest profile is the model's, so it fits there too.
  MinihvRun self = run_minihv({"cpuid", "compare", "--guest", dir.file("guest.json"), "--host", dir.file("guest.json")});
  EXPECT_EQ(self.rc, 0) << self.out << self.err;
}

// --- the advisory warning ------------------------------------------------------------------------

bool advisory_host() { return cpuid::decide_enforcement(cpuid::read_host_facts()).advisory; }

// On PVM (CPUID advisory) the first run of the day warns, the next does not, -v always does, and
// status always says so; on a host that enforces CPU models (hardware KVM, the hw lane) nothing
// warns, not even with -v, and status says the model is enforced.
TEST(OperatorAdvisory, WarnedOncePerDayOrWithVerboseAndAlwaysInStatus) {
  const bool advisory = advisory_host();
  // The expectation comes from the product's own decision; where the answer is known, pin it.
  if (std::getenv("MINIHV_HW_LANE")) {
    ASSERT_FALSE(advisory) << "the hw lane's KVM (nested SVM) enforces CPU models";
  }
  TempDir runtime;
  const std::vector<std::string> env{"XDG_RUNTIME_DIR=" + runtime.path()};
  auto run_once = [&](std::vector<std::string> extra) {
    TempDir d;
    std::vector<std::string> a{"run", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "64M",
                               "--cpu-model", "x86-64-v2", "--api", d.file("api.sock")};
    a.insert(a.end(), extra.begin(), extra.end());
    VmProcess vm(a, env);
    EXPECT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 30s)) << vm.stderr_text();
    MinihvRun st = run_minihv({"vm", "status", "--api", d.file("api.sock"), "--json"});
    auto j = nlohmann::json::parse(st.out, nullptr, false);
    EXPECT_EQ(j["cpu"].value("advisory", !advisory), advisory) << st.out;
    if (advisory) {
      EXPECT_TRUE(contains(j["cpu"].value("reason", ""), "PVM")) << st.out;
    }
    vm.kill(SIGTERM);
    vm.wait_exit(20s);
    return contains(vm.stderr_text(), "is advisory on this host");
  };
  EXPECT_EQ(run_once({}), advisory) << "the first run of the day warns, where the model is advisory";
  EXPECT_FALSE(run_once({})) << "the second does not";
  EXPECT_EQ(run_once({"-v"}), advisory) << "-v always does, where the model is advisory";
}

// --- migrate failures ----------------------------------------------------------------------------

TEST(OperatorMigrate, UnreachableSocketIsAnErrorAndAJsonObject) {
  TempDir d;
  MinihvRun text = run_minihv({"migrate", "--api", d.file("none.sock"), "--to", "127.0.0.1:1"});
  EXPECT_EQ(text.rc, 1);
  EXPECT_TRUE(contains(text.err, "minihv: error: migration failed: ")) << text.err;
  EXPECT_EQ(text.out, "");
  MinihvRun json = run_minihv({"migrate", "--api", d.file("none.sock"), "--to", "127.0.0.1:1", "--json"});
  EXPECT_EQ(json.rc, 1);
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json.out;
  EXPECT_EQ(j["ok"], false);
  EXPECT_TRUE(j.contains("error")) << json.out;
}

TEST(OperatorMigrate, AMigrationThatNeverStartedSaysWhyOnStderrOnly) {
  TempDir d;
  const std::string api = d.file("api.sock");
  VmProcess vm({"run", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "64M", "--api", api});
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 30s)) << vm.stderr_text();
  const std::string nobody = "127.0.0.1:" + std::to_string(free_port());
  MinihvRun text = run_minihv({"migrate", "--api", api, "--to", nobody});
  EXPECT_EQ(text.rc, 1);
  EXPECT_EQ(text.out, "") << "nothing was sent: no summary";
  EXPECT_TRUE(contains(text.err, "minihv: error: migration failed: ")) << text.err;
  MinihvRun json = run_minihv({"migrate", "--api", api, "--to", nobody, "--json"});
  EXPECT_EQ(json.rc, 1);
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json.out;
  EXPECT_EQ(j["ok"], false);
  EXPECT_FALSE(j.value("error", "").empty()) << json.out;
  EXPECT_NE(j.value("result", "ok"), "ok") << json.out;
  EXPECT_TRUE(contains(json.err, "minihv: error: migration failed: ")) << json.err;
  EXPECT_TRUE(vm.wait_line("^HB cpu=0 seq=3 ", 20s)) << "the VM goes on here";
  vm.kill(SIGTERM);
  EXPECT_EQ(vm.wait_exit(20s), 0);
}

// --- run --incoming takes its size from the source --------------------------------------------------

// The source with the test guest (idle, 256M, 2 vCPUs) on a control socket.
std::unique_ptr<VmProcess> boot_source(const std::string& api, std::vector<std::string> extra = {}) {
  std::vector<std::string> a{"run", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "256M",
                             "--cpus", "2", "--api", api};
  a.insert(a.end(), extra.begin(), extra.end());
  auto vm = std::make_unique<VmProcess>(a);
  EXPECT_TRUE(vm->wait_line("^HB cpu=1 seq=1 ", 30s)) << vm->stdout_text() << vm->stderr_text();
  return vm;
}

std::unique_ptr<VmProcess> incoming_without_size(const std::string& api, int port, std::vector<std::string> extra = {}) {
  std::vector<std::string> a{"run", "-v", "--api", api, "--incoming", "127.0.0.1:" + std::to_string(port)};
  a.insert(a.end(), extra.begin(), extra.end());
  auto vm = std::make_unique<VmProcess>(a);
  EXPECT_TRUE(vm->wait_stderr("waiting for a migrating VM", 20s)) << vm->stderr_text();
  return vm;
}

TEST(OperatorIncoming, TakesMemoryAndVcpusFromTheSource) {
  TempDir d;
  const std::string src_api = d.file("src.sock"), dst_api = d.file("dst.sock");
  auto src = boot_source(src_api);
  EXPECT_EQ(src->lines_matching("boot cpus=2 mem_mib=25[56] ").size(), 1u) << src->stdout_text();
  const int port = free_port();
  auto dst = incoming_without_size(dst_api, port);
  auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port), {"--verify"});
  ASSERT_EQ(r.exit, 0) << r.stderr_text << r.json.dump(2) << "\ndestination:\n" << dst->stderr_text();
  EXPECT_EQ(src->wait_exit(20s), 0) << src->stderr_text();
  ASSERT_TRUE(dst->wait_line("^HB cpu=1 ", 20s)) << dst->stdout_text() << dst->stderr_text();
  ASSERT_TRUE(dst->wait_line("^HB cpu=0 ", 20s)) << dst->stdout_text() << dst->stderr_text();
  MinihvRun st = run_minihv({"vm", "status", "--api", dst_api, "--json"});
  ASSERT_EQ(st.rc, 0) << st.err;
  auto j = nlohmann::json::parse(st.out, nullptr, false);
  EXPECT_EQ(j["state"], "running") << st.out;
  EXPECT_EQ(j["cpus"], 2) << st.out;
  EXPECT_EQ(j["mem_bytes"], 256ull << 20) << st.out;
  EXPECT_EQ(j["vcpus"].size(), 2u) << st.out;
  EXPECT_EQ(j["cpu"]["model"], "host") << st.out;
  dst->kill(SIGTERM);
  EXPECT_EQ(dst->wait_exit(20s), 0) << dst->stderr_text();
}

TEST(OperatorIncoming, AGivenSizeOrDiskCountThatDiffersIsRefusedBeforeAnyPageMoves) {
  TempDir d;
  const std::string src_api = d.file("src.sock");
  make_image(d.file("disk.img"), 16ull << 20);
  auto src = boot_source(src_api, {"--disk", d.file("disk.img")});
  struct Case {
    std::vector<std::string> extra;
    std::string says;
  };
  for (const Case& c : {Case{{"--cpus", "1", "--disk", d.file("disk.img")}, "2 vCPUs, this destination 1"},
                        Case{{}, "1 disk(s), this destination 0"}}) {
    const int port = free_port();
    auto dst = incoming_without_size(d.file("dst.sock"), port, c.extra);
    auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(r.exit, 1) << r.json.dump(2);
    EXPECT_TRUE(contains(r.json.value("error", ""), c.says)) << r.json.dump(2);
    uint64_t pages = 0;
    for (const auto& [kind, n] : r.json["pages"].items()) pages += n.get<uint64_t>();
    EXPECT_EQ(pages, 0u) << "refused before any page moved: " << r.json.dump(2);
    EXPECT_EQ(dst->wait_exit(20s), 1) << dst->stderr_text();
    EXPECT_TRUE(contains(dst->stderr_text(), c.says)) << dst->stderr_text();
  }
  EXPECT_TRUE(src->wait_line("^HB cpu=0 seq=4 ", 20s)) << "the VM goes on at the source";
  src->kill(SIGTERM);
  EXPECT_EQ(src->wait_exit(20s), 0);
}

}  // namespace
}  // namespace minihv::test
