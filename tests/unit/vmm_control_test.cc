// vmm/control: the control socket's dispatch, on a fake VM (no KVM needed), and through a real
// socket for what the server answers itself (a line that is not a JSON object).
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "vmm/control.h"

namespace minihv {
namespace {

using Json = nlohmann::json;

// A VM that records what it was asked.
struct FakeVm {
  std::vector<std::string> calls;
  Status pause_status = Status::ok();
  ControlledVm controlled() {
    return {[this] { calls.push_back("status"); return Json{{"state", "running"}, {"cpus", 2}}; },
            [this] { calls.push_back("stats"); return Json{{"exits", 7}}; },
            [this] { calls.push_back("pause"); return pause_status; },
            [this] { calls.push_back("resume"); return Status::ok(); },
            [this] { calls.push_back("stop"); }};
  }
};

const ApiServer::Progress kNoProgress = [](const Json&) {};

ControlPlugin migration_like_plugin(std::vector<std::string>& seen) {
  ControlPlugin p;
  p.commands = {{"migrate", [&seen](const Json&, const ApiServer::Progress&) { seen.push_back("migrate"); return Json{{"ok", true}}; }},
                {"migrate-resolve", [&seen](const Json&, const ApiServer::Progress&) { seen.push_back("resolve"); return Json{{"ok", true}}; }}};
  p.status_key = "migration";
  p.status = [] { return Json{{"in_doubt", false}}; };
  return p;
}

TEST(VmControl, AnUnknownCommandIsRefusedWithTheListOfCommands) {
  FakeVm vm;
  std::vector<std::string> seen;
  VmControl control(vm.controlled(), {"console"}, migration_like_plugin(seen));
  EXPECT_EQ(control.handle({{"cmd", "reboot"}}, kNoProgress).dump(),
            R"j({"error":"unknown command 'reboot' (commands: status, stats, pause, resume, stop, console, migrate, )j"
            R"j(migrate-resolve)","ok":false})j");
  EXPECT_EQ(control.handle(Json::object(), kNoProgress).value("error", ""),
            "unknown command '' (commands: status, stats, pause, resume, stop, console, migrate, migrate-resolve)");
  EXPECT_TRUE(vm.calls.empty());
  EXPECT_TRUE(seen.empty());
}

TEST(VmControl, WithoutPluginOnlyTheBuiltinsAreListed) {
  FakeVm vm;
  VmControl control(vm.controlled(), {});
  EXPECT_EQ(control.handle({{"cmd", "migrate"}}, kNoProgress).value("error", ""),
            "unknown command 'migrate' (commands: status, stats, pause, resume, stop)");
}

TEST(VmControl, ACmdThatIsNotAStringThrowsForTheServerToRefuse) {
  FakeVm vm;
  VmControl control(vm.controlled(), {});
  EXPECT_THROW(control.handle({{"cmd", 5}}, kNoProgress), std::exception);
}

TEST(VmControl, StatusIsTheVmsWithThePluginsPartAndOk) {
  FakeVm vm;
  std::vector<std::string> seen;
  VmControl control(vm.controlled(), {"console"}, migration_like_plugin(seen));
  EXPECT_EQ(control.handle({{"cmd", "status"}}, kNoProgress).dump(),
            R"({"cpus":2,"migration":{"in_doubt":false},"ok":true,"state":"running"})");
  VmControl bare(vm.controlled(), {});
  EXPECT_EQ(bare.handle({{"cmd", "status"}}, kNoProgress).dump(), R"({"cpus":2,"ok":true,"state":"running"})");
  EXPECT_EQ(bare.handle({{"cmd", "stats"}}, kNoProgress).dump(), R"({"exits":7,"ok":true})");
}

TEST(VmControl, PauseResumeAndStopReplyOkOrTheError) {
  FakeVm vm;
  VmControl control(vm.controlled(), {});
  EXPECT_EQ(control.handle({{"cmd", "pause"}}, kNoProgress).dump(), R"({"ok":true})");
  EXPECT_EQ(control.handle({{"cmd", "resume"}}, kNoProgress).dump(), R"({"ok":true})");
  vm.pause_status = Status::error("the VM is not running");
  EXPECT_EQ(control.handle({{"cmd", "pause"}}, kNoProgress).dump(), R"({"error":"the VM is not running","ok":false})");
  EXPECT_EQ(control.handle({{"cmd", "stop"}}, kNoProgress).dump(), R"({"ok":true})");
  EXPECT_EQ(vm.calls, (std::vector<std::string>{"pause", "resume", "pause", "stop"}));
}

TEST(VmControl, ThePluginsRunStateGuardCanRefuseAPause) {
  FakeVm vm;
  ControlPlugin p;
  bool busy = true;
  p.run_state = [&busy](const std::string& cmd, const ControlPlugin::RunStateChange& change) {
    return busy ? control_refusal(cmd + " is refused: busy") : change();
  };
  VmControl control(vm.controlled(), {}, std::move(p));
  EXPECT_EQ(control.handle({{"cmd", "resume"}}, kNoProgress).dump(), R"({"error":"resume is refused: busy","ok":false})");
  EXPECT_TRUE(vm.calls.empty());
  busy = false;
  EXPECT_EQ(control.handle({{"cmd", "resume"}}, kNoProgress).dump(), R"({"ok":true})");
  EXPECT_EQ(vm.calls, (std::vector<std::string>{"resume"}));
}

TEST(VmControl, AnInterceptAnswersFirstAndPluginCommandsBeforeBuiltins) {
  FakeVm vm;
  std::vector<std::string> seen;
  ControlPlugin p = migration_like_plugin(seen);
  bool arriving = true;
  p.intercept = [&arriving](const std::string& cmd) -> std::optional<Json> {
    if (!arriving) return std::nullopt;
    return control_refusal(cmd + " waits");
  };
  VmControl control(vm.controlled(), {"console"}, std::move(p));
  EXPECT_EQ(control.handle({{"cmd", "migrate"}}, kNoProgress).dump(), R"({"error":"migrate waits","ok":false})");
  EXPECT_TRUE(seen.empty());
  arriving = false;
  EXPECT_EQ(control.handle({{"cmd", "migrate"}}, kNoProgress).dump(), R"({"ok":true})");
  EXPECT_EQ(control.handle({{"cmd", "migrate-resolve"}, {"action", "ask"}}, kNoProgress).dump(), R"({"ok":true})");
  EXPECT_EQ(seen, (std::vector<std::string>{"migrate", "resolve"}));
  EXPECT_TRUE(vm.calls.empty());
}

// One line to a socket, one line back.
std::string request_line(const std::string& path, const std::string& line) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)!::write(fd, line.data(), line.size());
  std::string reply;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') reply += c;
  ::close(fd);
  return reply;
}

TEST(VmControl, OverTheSocketBadJsonAndAMalformedRequestAreRefused) {
  char dir[] = "/tmp/minihv-control-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/api.sock";
  FakeVm vm;
  VmControl control(vm.controlled(), {});
  {
    auto server = ApiServer::start(path, control.handler());
    ASSERT_TRUE(server) << server.message();
    EXPECT_EQ(request_line(path, "this is not json\n"), R"({"error":"request is not a JSON object","ok":false})");
    EXPECT_EQ(request_line(path, "[1,2]\n"), R"({"error":"request is not a JSON object","ok":false})");
    const Json malformed = Json::parse(request_line(path, R"({"cmd":5})" "\n"));
    EXPECT_FALSE(malformed.value("ok", true));
    EXPECT_EQ(malformed.value("error", "").rfind("malformed request: ", 0), 0u) << malformed.dump();
    EXPECT_EQ(request_line(path, R"({"cmd":"stats"})" "\n"), R"({"exits":7,"ok":true})");
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace minihv
