// Runs in the hw lane (scripts/hw-lane; L1 loads tun and bridge). Debian's kernel with its own
// virtio_net driver on a minihv NIC (the guest kit's init brings eth0 up): the guest answers ping from the host and pings back, then it
// live-migrates to a second minihv whose tap is on the same bridge and keeps answering, its MAC
// kept and announced (RARP rounds; Linux negotiates GUEST_ANNOUNCE and acknowledges). With
// queues=2 and two vCPUs Linux negotiates MQ and uses both pairs.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "tests/harness/guest_lan.h"
#include "tests/harness/harness.h"
#include "tests/hw/linux_boot.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kBridge = "mhbr0";
constexpr const char* kHostAddr = "10.77.0.1";
constexpr const char* kGuestAddr = "10.77.0.2";
const std::string kMac = "52:54:00:77:00:02";

void sh(const std::vector<std::string>& argv) {
  const CmdResult r = run_cmd(argv);
  ASSERT_EQ(r.status, 0) << argv[0] << " " << argv[1] << ": " << r.err;
}

// A bridge with the host's address and two persistent taps on it (source and destination).
class Bridge {
public:
  Bridge() {
    sh({"brctl", "addbr", kBridge});
    sh({"ip", "addr", "add", std::string(kHostAddr) + "/24", "dev", kBridge});
    sh({"ip", "link", "set", kBridge, "up"});
    for (const char* tap : {"mhs0", "mhd0"}) {
      sh({"tunctl", "-t", tap});
      sh({"brctl", "addif", kBridge, tap});
      sh({"ip", "link", "set", tap, "up"});
    }
  }
  ~Bridge() {
    for (const char* dev : {"mhs0", "mhd0"}) (void)run_cmd({"tunctl", "-d", dev});
    (void)run_cmd({"ip", "link", "set", kBridge, "down"});
    (void)run_cmd({"brctl", "delbr", kBridge});
  }
};

nlohmann::json nic(const std::string& api) {
  auto s = api_call(api, {{"cmd", "stats"}});
  return s && !(*s)["nics"].empty() ? (*s)["nics"][0] : nlohmann::json::object();
}

TEST(HwLinux, AGuestOnABridgeAnswersPingAcrossALiveMigration) {
  const std::string kit = source_dir() + "/guest-kit";
  struct stat st{};
  ASSERT_EQ(stat((kit + "/vmlinuz").c_str(), &st), 0) << "run scripts/guest-kit";
  Bridge bridge;
  TempDir dir;
  const std::vector<std::string> machine{"--kernel", kit + "/vmlinuz", "--initrd", kit + "/initrd.cpio.gz",
                                         "--mem", "256M", "--cpus", "1", "--cmdline",
                                         std::string("console=ttyS0 panic=-1 minihv.ip=") + kGuestAddr + "/24"};
  std::vector<std::string> a{"run", "--api", dir.file("src.sock"), "--net", "tap=mhs0,mac=" + kMac};
  a.insert(a.end(), machine.begin(), machine.end());
  // The kit's init brings eth0 up with minihv.ip= and prints the MAC the guest sees.
  LinuxBoot boot = boot_linux([&] { return std::make_unique<VmProcess>(VmProcess::WithTerminal{}, a); },
                              std::string("init: eth0 ") + kGuestAddr + "/24 " + kMac, 120s);
  VmProcess& src = *boot.vm;
  ASSERT_TRUE(boot.ready) << src.stdout_tail() << src.stderr_text();
  EXPECT_EQ(ping("", kGuestAddr, 10, 100ms, 5s), 10u) << src.stdout_tail() << src.stderr_text();
  ASSERT_TRUE(src.type(std::string("ping -c 3 -W 5 ") + kHostAddr + " >/dev/null && echo pong-$((2+2))\n"));
  EXPECT_TRUE(src.wait_line("^pong-4\\r?$", 30s)) << "the guest reaches the host\n" << src.stdout_tail();
  const auto before = nic(dir.file("src.sock"));
  EXPECT_GT(before.value("rx_frames", 0u), 10u) << before.dump();
  EXPECT_EQ(before.value("errors", 1u), 0u) << before.dump();

  const int port = free_port();
  std::vector<std::string> b{"-v", "run", "--api", dir.file("dst.sock"), "--net", "tap=mhd0"};
  b.insert(b.end(), machine.begin(), machine.end());
  b.insert(b.end(), {"--incoming", "127.0.0.1:" + std::to_string(port)});
  VmProcess dst(VmProcess::WithTerminal{}, b);
  ASSERT_TRUE(dst.wait_stderr("waiting for a migrating VM", 30s)) << dst.stderr_text();
  auto r = migrate(dir.file("src.sock"), "127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(r.exit, 0) << r.stderr_text << "\n" << dst.stderr_text();
  EXPECT_EQ(src.wait_exit(60s), 0) << src.stderr_text();
  // The bridge learned the guest's MAC on mhs0; it answers behind mhd0 now, at once.
  EXPECT_EQ(ping("", kGuestAddr, 10, 100ms, 5s), 10u) << dst.stdout_tail() << dst.stderr_text();
  std::this_thread::sleep_for(1s);  // the last announce round leaves 800 ms after the resume
  const auto after = nic(dir.file("dst.sock"));
  EXPECT_EQ(after.value("mac", ""), kMac) << "a migration keeps the guest's MAC";
  // One RARP when the source's pause ended the last round, then the 5 rounds once the guest ran.
  EXPECT_EQ(after.value("announcements", 0u), 6u) << after.dump();
  EXPECT_GT(after.value("rx_frames", 0u), 5u) << after.dump();
  EXPECT_EQ(after.value("errors", 1u), 0u) << after.dump();
  ASSERT_TRUE(dst.type("poweroff -f\n"));
  EXPECT_EQ(dst.wait_exit(60s), 0) << dst.stderr_text();
}

// Linux sets as many pairs as it has CPUs (VQ_PAIRS_SET 2): eth0 shows two queues each way, and
// the guest still answers on them.
TEST(HwLinux, AGuestWithTwoCpusGetsTwoQueuePairs) {
  const std::string kit = source_dir() + "/guest-kit";
  struct stat st{};
  ASSERT_EQ(stat((kit + "/vmlinuz").c_str(), &st), 0) << "run scripts/guest-kit";
  constexpr const char* kTap = "mhmq0";
  constexpr const char* kMqHost = "10.78.0.1";
  constexpr const char* kMqGuest = "10.78.0.2";
  TempDir dir;
  const std::vector<std::string> args{
      "run", "--api", dir.file("mq.sock"), "--net", std::string("tap=") + kTap + ",queues=2,mac=" + kMac,
      "--kernel", kit + "/vmlinuz", "--initrd", kit + "/initrd.cpio.gz", "--mem", "256M", "--cpus", "2",
      "--cmdline", std::string("console=ttyS0 panic=-1 minihv.ip=") + kMqGuest + "/24"};
  LinuxBoot boot = boot_linux([&] { return std::make_unique<VmProcess>(VmProcess::WithTerminal{}, args); },
                              std::string("init: eth0 ") + kMqGuest + "/24 " + kMac, 120s);
  VmProcess& vm = *boot.vm;
  ASSERT_TRUE(boot.ready) << vm.stdout_tail() << vm.stderr_text();
  sh({"ip", "addr", "add", std::string(kMqHost) + "/24", "dev", kTap});  // minihv made the tap and brought it up
  ASSERT_TRUE(vm.type("echo queues=$(ls /sys/class/net/eth0/queues)=\n"));
  EXPECT_TRUE(vm.wait_line("queues=rx-0 rx-1 tx-0 tx-1=", 30s)) << vm.stdout_tail();
  EXPECT_EQ(ping("", kMqGuest, 10, 100ms, 5s), 10u) << vm.stdout_tail() << vm.stderr_text();
  const auto stats = nic(dir.file("mq.sock"));
  EXPECT_EQ(stats.value("queue_pairs", 0u), 2u) << "the driver's VQ_PAIRS_SET 2 was taken: " << stats.dump();
  EXPECT_EQ(stats.value("errors", 1u), 0u) << stats.dump();
  ASSERT_TRUE(vm.type("poweroff -f\n"));
  EXPECT_EQ(vm.wait_exit(60s), 0) << vm.stderr_text();
}

}  // namespace
}  // namespace minihv::test
