// The everyday tools: `minihv ps`, a short `vm status`, `minihv console`, `run` on a terminal,
// and the control socket of an `--incoming` VM while it waits — real minihv processes.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/harness/harness.h"
#include "vmm/api.h"
#include "vmm/console_hub.h"
#include "vmm/registry.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr auto kCommandLimit = 30s;  // every command here ends at once

std::vector<std::string> guest(const std::string& cmdline, std::vector<std::string> extra = {}) {
  std::vector<std::string> a{"run", "--kernel", testguest_elf(), "--cmdline", cmdline, "--mem", "256M"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}


size_t count_lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

// Until the VM's control socket answers (a VM whose console goes to a file prints nothing).
bool wait_for_api(const std::string& api) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (api_call(api, {{"cmd", "status"}}, 1000)) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

mode_t mode_of(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

class Tools : public ::testing::Test {
protected:
  void SetUp() override { ::signal(SIGPIPE, SIG_IGN); }  // type() into a console that has gone
  TempDir dir_;
  std::string run_dir_ = dir_.file("run/vms");  // not there yet: minihv run creates it
  std::string env_ = std::string(registry::kRunDirEnv) + "=" + run_dir_;

  nlohmann::json ps_json() {
    MinihvRun ps = run_minihv({"ps", "--json"}, {env_}, kCommandLimit);
    EXPECT_EQ(ps.rc, 0) << ps.err;
    auto j = nlohmann::json::parse(ps.out, nullptr, false);
    EXPECT_TRUE(j.is_array()) << ps.out;
    return j.is_array() ? j : nlohmann::json::array();
  }
};

const nlohmann::json* find_pid(const nlohmann::json& list, pid_t pid) {
  for (const auto& e : list)
    if (e.value("pid", 0) == pid) return &e;
  return nullptr;
}

TEST_F(Tools, PsListsRunningVmsAndDropsOneKilledWithSigkill) {
  const std::string api = dir_.file("a.sock");
  VmProcess a(guest("idle", {"--name", "alpha", "--api", api, "--cpus", "1"}), {env_});
  VmProcess b({"run", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "128M", "--cpus", "2"}, {env_});
  ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=1 ", 30s)) << a.stderr_text();
  ASSERT_TRUE(b.wait_line("^HB cpu=0 seq=1 ", 30s)) << b.stderr_text();
  EXPECT_EQ(mode_of(run_dir_), 0700u);
  EXPECT_EQ(mode_of(run_dir_ + "/" + std::to_string(a.pid()) + ".json"), 0600u);

  // A record whose pid is alive but whose start time is not that process's: a reused pid.
  auto self = registry::process_start_ticks(getpid());
  ASSERT_TRUE(self) << self.message();
  const std::string reused = run_dir_ + "/" + std::to_string(getpid()) + ".json";
  std::ofstream(reused) << nlohmann::json{{"pid", getpid()}, {"start_ticks", *self + 1}, {"name", "ghost"}}.dump();

  auto list = ps_json();
  ASSERT_EQ(list.size(), 2u) << list.dump(2);
  const auto* ea = find_pid(list, a.pid());
  const auto* eb = find_pid(list, b.pid());
  ASSERT_TRUE(ea && eb) << list.dump(2);
  EXPECT_EQ((*ea)["name"], "alpha");
  EXPECT_EQ((*ea)["state"], "running");  // from its control socket
  EXPECT_EQ((*ea)["mem_bytes"], 256ull << 20);
  EXPECT_EQ((*ea)["cpus"], 1);
  EXPECT_EQ((*ea)["api"], api);
  EXPECT_TRUE((*ea)["uptime_ms"].is_number_unsigned());
  EXPECT_EQ((*eb)["name"], "testguest.elf");  // no --name: the kernel file's name
  EXPECT_EQ((*eb)["state"], "running");      // no --api: the record's word
  EXPECT_EQ((*eb)["mem_bytes"], 128ull << 20);
  EXPECT_EQ((*eb)["cpus"], 2);
  EXPECT_TRUE((*eb)["api"].is_null());
  EXPECT_NE(access(reused.c_str(), F_OK), 0) << "the reused pid's record should be gone";

  MinihvRun table = run_minihv({"ps"}, {env_}, kCommandLimit);
  EXPECT_EQ(table.rc, 0) << table.err;
  EXPECT_EQ(table.out.rfind("NAME", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("alpha"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("256 MiB"), std::string::npos) << table.out;
  EXPECT_EQ(count_lines(table.out), 3u) << table.out;

  b.kill(SIGKILL);
  ASSERT_TRUE(b.wait_exit(10s));
  const std::string b_record = run_dir_ + "/" + std::to_string(b.pid()) + ".json";
  EXPECT_EQ(access(b_record.c_str(), F_OK), 0) << "a SIGKILLed VM cannot remove its record";
  list = ps_json();
  ASSERT_EQ(list.size(), 1u) << list.dump(2);
  EXPECT_EQ(list[0]["name"], "alpha");
  EXPECT_NE(access(b_record.c_str(), F_OK), 0) << "ps should remove the stale record";

  ASSERT_TRUE(api_call(api, {{"cmd", "stop"}}));
  EXPECT_EQ(a.wait_exit(20s), 0);
  EXPECT_EQ(ps_json().size(), 0u);
  EXPECT_NE(access((run_dir_ + "/" + std::to_string(a.pid()) + ".json").c_str(), F_OK), 0)
      << "a clean exit removes the record";
}

TEST_F(Tools, VmStatusIsShortAndCpuidAddsTheTables) {
  const std::string api = dir_.file("a.sock");
  VmProcess vm(guest("idle", {"--api", api}));
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 30s)) << vm.stderr_text();

  MinihvRun brief = run_minihv({"vm", "status", "--api", api}, {}, kCommandLimit);
  EXPECT_EQ(brief.rc, 0) << brief.err;
  EXPECT_EQ(brief.out.rfind("state", 0), 0u) << "the state comes first:\n" << brief.out;
  EXPECT_NE(brief.out.find("running"), std::string::npos) << brief.out;
  EXPECT_NE(brief.out.find("256 MiB"), std::string::npos) << brief.out;
  EXPECT_LT(count_lines(brief.out), 20u) << brief.out;

  MinihvRun tables = run_minihv({"vm", "status", "--api", api, "--cpuid"}, {}, kCommandLimit);
  EXPECT_EQ(tables.rc, 0) << tables.err;
  // The brief status and then a line per CPUID leaf and register set: an emulated CPU (the hw lane's)
  // has fewer leaves than a real one, and still dozens.
  EXPECT_GT(count_lines(tables.out), count_lines(brief.out) + 30) << tables.out;
  EXPECT_NE(tables.out.find("CPUID of the model"), std::string::npos);

  MinihvRun json = run_minihv({"vm", "status", "--api", api, "--json"}, {}, kCommandLimit);
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json.out;
  EXPECT_EQ(j["state"], "running");
  EXPECT_TRUE(j["cpu"].contains("model"));
  EXPECT_FALSE(j["cpu"].contains("profile"));
  EXPECT_FALSE(j["cpu"].contains("applied"));
  MinihvRun full = run_minihv({"vm", "status", "--api", api, "--json", "--cpuid"}, {}, kCommandLimit);
  j = nlohmann::json::parse(full.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << full.out;
  EXPECT_GT(j["cpu"]["profile"]["leaves"].size(), 10u);

  MinihvRun gone = run_minihv({"vm", "status", "--api", dir_.file("nobody.sock"), "--json"}, {}, kCommandLimit);
  EXPECT_EQ(gone.rc, 1);
  EXPECT_EQ(gone.err.rfind("minihv: error: ", 0), 0u) << gone.err;
  j = nlohmann::json::parse(gone.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << gone.out;
  EXPECT_EQ(j["ok"], false);
  EXPECT_TRUE(j["error"].is_string());
  ASSERT_TRUE(api_call(api, {{"cmd", "stop"}}));
  EXPECT_EQ(vm.wait_exit(20s), 0);
}

TEST_F(Tools, ConsoleFromAPipeCarriesOutputBothWays) {
  const std::string api = dir_.file("a.sock");
  VmProcess vm(guest("echo", {"--api", api}));
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 30s)) << vm.stderr_text();
  VmProcess console(VmProcess::WithPipe{}, {"console", "--api", api});
  VmProcess second(VmProcess::WithPipe{}, {"console", "--api", api});  // two at once
  ASSERT_TRUE(console.wait_line("^HB cpu=0 ", 10s)) << console.stderr_text();
  ASSERT_TRUE(second.wait_line("^HB cpu=0 ", 10s)) << second.stderr_text();
  ASSERT_TRUE(console.type("hello console\n"));
  EXPECT_TRUE(console.wait_line("^ECHO hello console$", 10s)) << console.stdout_text() << console.stderr_text();
  EXPECT_TRUE(second.wait_line("^ECHO hello console$", 10s)) << second.stdout_text();
  EXPECT_TRUE(vm.wait_line("^ECHO hello console$", 10s)) << "stdout still has the console too";
  console.close_input();  // end of input: a short drain, then exit 0
  EXPECT_EQ(console.wait_exit(10s), 0) << console.stderr_text();
  EXPECT_TRUE(second.wait_line("^HB cpu=0 seq=5 ", 15s)) << "the other client goes on";
  ASSERT_TRUE(api_call(api, {{"cmd", "stop"}}));
  EXPECT_EQ(vm.wait_exit(20s), 0);
  EXPECT_EQ(second.wait_exit(10s), 0) << "the VM's end ends an attached console";
  EXPECT_NE(second.stderr_text().find("console closed"), std::string::npos) << second.stderr_text();
}

// A guest that writes without end fills no disk: the console file rotates at its cap.
TEST_F(Tools, AConsoleFileIsCappedAndRotated) {
  constexpr uint64_t kCap = 64 * 1024;
  const std::string api = dir_.file("a.sock"), console = dir_.file("console.txt");
  VmProcess vm(guest("chatter", {"--api", api, "--console", console, "--console-max", "64K"}));
  ASSERT_TRUE(wait_for_api(api)) << vm.stderr_text();
  auto tx = [&] {
    auto s = api_call(api, {{"cmd", "stats"}}, 2000);
    return s ? (*s)["console_tx_bytes"].get<uint64_t>() : 0;
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (tx() < 5 * kCap && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
  ASSERT_GE(tx(), 5 * kCap) << "the guest's console stopped: " << vm.stderr_text();
  ASSERT_TRUE(api_call(api, {{"cmd", "stop"}}));
  EXPECT_EQ(vm.wait_exit(20s), 0) << vm.stderr_text();
  EXPECT_LE(std::filesystem::file_size(console), kCap);
  EXPECT_EQ(std::filesystem::file_size(console + ".1"), kCap) << "the older half ends at the cap";
  EXPECT_FALSE(std::filesystem::exists(console + ".2"));
  std::ifstream f(console + ".1");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("TICK "), std::string::npos) << "not the guest's output";
}

TEST_F(Tools, AConsoleClientThatStopsReadingDoesNotStopTheGuest) {
  const std::string api = dir_.file("a.sock");
  VmProcess vm(guest("chatter", {"--api", api, "--console", dir_.file("console.txt")}));
  ASSERT_TRUE(wait_for_api(api)) << vm.stderr_text();
  auto stalled = api_open_stream(api, {{"cmd", "console"}});  // attached, never read
  ASSERT_TRUE(stalled) << stalled.message();
  auto tx = [&] {
    auto s = api_call(api, {{"cmd", "stats"}}, 2000);
    return s ? (*s)["console_tx_bytes"].get<uint64_t>() : 0;
  };
  // Well past what the client's queue and the socket's buffers hold. How soon depends on the host
  // (about 5 s here, 70 s in the hw lane under QEMU TCG): what fails is a console that stops.
  const uint64_t kWellPast = 3 * ConsoleHub::kClientQueue;
  constexpr auto kStopped = 10s;  // no console byte in this long: the guest was stopped
  uint64_t before = tx();
  for (auto last_growth = std::chrono::steady_clock::now(); before < kWellPast;) {
    std::this_thread::sleep_for(100ms);
    const uint64_t now_tx = tx();
    if (now_tx > before) last_growth = std::chrono::steady_clock::now();
    before = now_tx;
    if (std::chrono::steady_clock::now() - last_growth > kStopped) break;
  }
  ASSERT_GE(before, kWellPast) << "the guest's console stopped: " << vm.stderr_text();
  std::this_thread::sleep_for(500ms);
  EXPECT_GT(tx(), before) << "the guest goes on writing";
  // What the stalled client reads now: the bytes it had, then the note on what it lost.
  std::string got;
  char buf[65536];
  const auto read_until = std::chrono::steady_clock::now() + 20s;
  while (got.find("bytes of console output dropped") == std::string::npos &&
         std::chrono::steady_clock::now() < read_until) {
    ssize_t n = recv(stalled->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    else std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(got.find("bytes of console output dropped"), std::string::npos) << got.size() << " bytes read";
  ASSERT_TRUE(api_call(api, {{"cmd", "stop"}}));
  EXPECT_EQ(vm.wait_exit(20s), 0);
}

TEST_F(Tools, RunOnATerminalSendsRawKeysAndStopsOnTheEscapeKey) {
  VmProcess vm(VmProcess::WithTerminal{}, guest("echo"));
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 30s)) << vm.stderr_text();
  ASSERT_TRUE(vm.type("raw\x03keys\r"));  // Ctrl-C is a key for the guest, Enter is a carriage return
  EXPECT_TRUE(vm.wait_line("^ECHO raw\x03keys$", 10s)) << vm.stdout_text();
  EXPECT_FALSE(vm.wait_exit(1s).has_value()) << "Ctrl-C must not stop the VM";
  ASSERT_TRUE(vm.type("\x1d"));
  EXPECT_EQ(vm.wait_exit(20s), 0) << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find("Ctrl-]: stopping the VM"), std::string::npos) << vm.stderr_text();
}

TEST_F(Tools, AnIncomingVmAnswersStatusWhileItWaitsAndStops) {
  const std::string api = dir_.file("in.sock");
  const int port = free_port();
  const std::string where = "127.0.0.1:" + std::to_string(port);
  VmProcess vm({"run", "--incoming", where, "--api", api, "--mem", "256M"}, {env_});
  ASSERT_TRUE(vm.wait_stderr("waiting for a migrating VM", 30s)) << vm.stderr_text();

  auto st = api_call(api, {{"cmd", "status"}}, 2000);
  ASSERT_TRUE(st) << st.message();
  EXPECT_EQ((*st)["state"], "incoming") << st->dump(2);
  EXPECT_EQ((*st)["incoming"]["phase"], "listening");
  EXPECT_EQ((*st)["incoming"]["address"], where);
  MinihvRun brief = run_minihv({"vm", "status", "--api", api}, {}, kCommandLimit);
  EXPECT_EQ(brief.rc, 0) << brief.err;
  EXPECT_NE(brief.out.find("listening on " + where), std::string::npos) << brief.out;
  auto list = ps_json();
  ASSERT_EQ(list.size(), 1u) << list.dump(2);
  EXPECT_EQ(list[0]["state"], "incoming");

  MinihvRun pause = run_minihv({"vm", "pause", "--api", api}, {}, kCommandLimit);
  EXPECT_EQ(pause.rc, 1) << "nothing to pause yet";
  EXPECT_NE(pause.err.find("waits for a migration"), std::string::npos) << pause.err;

  MinihvRun stop = run_minihv({"vm", "stop", "--api", api}, {}, kCommandLimit);
  EXPECT_EQ(stop.rc, 0) << stop.err;
  EXPECT_EQ(vm.wait_exit(10s), 0) << vm.stderr_text();
  EXPECT_TRUE(vm.wait_stderr("stopped while waiting for a migrating VM", 1s)) << vm.stderr_text();
  EXPECT_EQ(ps_json().size(), 0u);
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line, nullptr, false));
  return v;
}

// `vm events` prints what the VM did, the missed part first, and ends with the VM: the stream a
// cluster node reads instead of the VMM's stderr.
TEST_F(Tools, VmEventsTellsWhatTheVmDidAndWhyItEnded) {
  const std::string api = dir_.file("ev.sock");
  const std::string where = "127.0.0.1:" + std::to_string(free_port());
  VmProcess vm({"run", "--incoming", where, "--api", api, "--mem", "256M"}, {env_});
  ASSERT_TRUE(vm.wait_stderr("waiting for a migrating VM", 30s)) << vm.stderr_text();
  VmProcess watcher({"vm", "events", "--api", api});
  ASSERT_TRUE(watcher.wait_line("\"listening\"", 10s)) << watcher.stderr_text();  // what it missed
  ASSERT_TRUE(api_call(api, {{"cmd", "stop"}}));
  EXPECT_EQ(vm.wait_exit(10s), 0) << vm.stderr_text();
  EXPECT_EQ(watcher.wait_exit(10s), 0) << watcher.stderr_text();
  const auto events = json_lines(watcher.stdout_text());
  ASSERT_EQ(events.size(), 2u) << watcher.stdout_text();
  EXPECT_EQ(events[0]["event"], "listening");
  EXPECT_EQ(events[0]["address"], where);
  EXPECT_EQ(events[1]["event"], "ended");
  EXPECT_EQ(events[1]["why"], "stopped");
  EXPECT_EQ(events[1]["exit"], 0);

  // No VM there: a clear error.
  MinihvRun gone = run_minihv({"vm", "events", "--api", dir_.file("nobody.sock")}, {}, kCommandLimit);
  EXPECT_EQ(gone.rc, 1);
  EXPECT_EQ(gone.err.rfind("minihv: error: ", 0), 0u) << gone.err;
}

}  // namespace
}  // namespace minihv::test
