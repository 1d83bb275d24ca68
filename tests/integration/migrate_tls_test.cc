// Migration over TLS between real minihv processes: the key options, a wrong key, --insecure, and
// forged streams from peers without the key against a real `run --incoming` port.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "common/keys.h"
#include "common/net.h"
#include "common/tls.h"
#include "migrate/frames.h"
#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

const std::string kNoKey = std::string(kTlsPskEnvName) + "=";  // env: no key file

std::vector<std::string> guest_args(const std::string& api) {
  return {"run", "--mem", "128M", "--cpus", "1", "--api", api};
}

std::unique_ptr<VmProcess> boot(const std::string& api) {
  auto a = guest_args(api);
  a.insert(a.end(), {"--kernel", testguest_elf(), "--cmdline", "idle"});
  auto vm = std::make_unique<VmProcess>(a);
  EXPECT_TRUE(vm->wait_line("^HB cpu=0 seq=2 ", 30s)) << vm->stderr_text();
  return vm;
}

std::unique_ptr<VmProcess> incoming(const std::string& api, int port, std::vector<std::string> extra = {},
                                    std::vector<std::string> env = {}) {
  auto a = guest_args(api);
  a.insert(a.begin(), "-v");
  a.insert(a.end(), {"--incoming", "127.0.0.1:" + std::to_string(port)});
  a.insert(a.end(), extra.begin(), extra.end());
  auto vm = std::make_unique<VmProcess>(a, std::move(env));
  EXPECT_TRUE(vm->wait_stderr("waiting for a migrating VM", 20s)) << vm->stderr_text();
  return vm;
}

// The VM keeps printing heartbeats (it still runs here).
void expect_running(VmProcess& vm) {
  const auto hbs = vm.lines_matching("^HB cpu=0 ");
  ASSERT_FALSE(hbs.empty()) << vm.stdout_text();
  auto last = parse_heartbeat(hbs.back());
  ASSERT_TRUE(last);
  EXPECT_TRUE(vm.wait_line("^HB cpu=0 seq=" + std::to_string(last->seq + 2) + " ", 30s))
      << "the source VM must keep running:\n" << vm.stderr_text();
}

std::string state_of(const std::string& api) {
  auto r = api_call(api, {{"cmd", "status"}});
  return r ? r->value("state", "") : "unreachable: " + r.message();
}

class MigrationTls : public ::testing::Test {
protected:
  TempDir dir;
  std::string src_api = dir.file("src.sock"), dst_api = dir.file("dst.sock");
};

TEST_F(MigrationTls, InsecureWorksAndWarnsOnBothSides) {
  auto src = boot(src_api);
  const int port = free_port();
  auto dst = incoming(dst_api, port, {"--insecure"}, {kNoKey});
  EXPECT_NE(dst->stderr_text().find("minihv: warning: --insecure"), std::string::npos) << dst->stderr_text();
  auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port), {"--insecure"}, {kNoKey});
  ASSERT_EQ(r.exit, 0) << r.stderr_text << r.json.dump(2);
  EXPECT_NE(r.stderr_text.find("minihv: warning: --insecure"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.json.value("tls", "").find("plain TCP"), std::string::npos) << r.json.dump(2);
  EXPECT_TRUE(dst->wait_line("^HB cpu=0 ", 20s)) << dst->stderr_text();
}

TEST_F(MigrationTls, NoKeyAndNoInsecureIsAUsageErrorNamingBoth) {
  auto run = run_minihv({"run", "--incoming", "127.0.0.1:" + std::to_string(free_port())}, {kNoKey}, 20s);
  EXPECT_EQ(run.rc, 2) << run.err;
  EXPECT_NE(run.err.find("--tls-psk"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("--insecure"), std::string::npos) << run.err;
  auto src = boot(src_api);
  auto m = migrate(src_api, "127.0.0.1:1", {}, {kNoKey});
  EXPECT_EQ(m.exit, 2) << m.stderr_text;
  EXPECT_NE(m.stderr_text.find("--tls-psk"), std::string::npos) << m.stderr_text;
  EXPECT_NE(m.stderr_text.find("--insecure"), std::string::npos) << m.stderr_text;
  expect_running(*src);
}

TEST_F(MigrationTls, ABadKeyFileIsAUsageErrorWithTheReason) {
  const std::string loose = dir.file("loose.key");
  ASSERT_TRUE(keys::write_new_key(loose));
  ASSERT_EQ(::chmod(loose.c_str(), 0644), 0);
  auto run = run_minihv({"run", "--incoming", "127.0.0.1:1", "--tls-psk", loose}, {}, 20s);
  EXPECT_EQ(run.rc, 2) << run.err;
  EXPECT_NE(run.err.find(loose), std::string::npos) << run.err;
  auto both = run_minihv({"run", "--incoming", "127.0.0.1:1", "--tls-psk", loose, "--insecure"}, {}, 20s);
  EXPECT_EQ(both.rc, 2) << both.err;
}

TEST_F(MigrationTls, AWrongKeyFailsCleanlyAndTheSourceKeepsRunning) {
  const std::string other = dir.file("other.key");
  ASSERT_TRUE(keys::write_new_key(other));
  auto src = boot(src_api);
  const int port = free_port();
  auto dst = incoming(dst_api, port, {"--tls-psk", other});
  auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(r.exit, 1) << r.stderr_text << r.json.dump(2);
  EXPECT_NE(r.stderr_text.find("key"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << r.stderr_text;
  expect_running(*src);
  EXPECT_EQ(state_of(src_api), "running");
  EXPECT_TRUE(dst->lines_matching("^HB ").empty()) << dst->stdout_text();
  EXPECT_TRUE(dst->wait_stderr("does not hold", 10s)) << dst->stderr_text();
}

// A peer without the key sends what a source would: STREAM_OPEN, then a forged COMMIT, in plain
// TCP; another tries TLS with a key of its own. Neither gets a VM to run; a real source then does.
TEST_F(MigrationTls, ForgedStreamsWithoutTheKeyNeverRunAndARealMigrationStillSucceeds) {
  const int port = free_port();
  auto dst = incoming(dst_api, port);
  const net::Endpoint at{"127.0.0.1", static_cast<uint16_t>(port)};
  {
    auto fd = net::connect_to(at, 2s);
    ASSERT_TRUE(fd) << fd.message();
    std::string bytes;
    for (migrate::Frame f : {migrate::make_stream_open({0xF0F0, 0, 1}), migrate::make_commit()}) {
      migrate::seal(f, 0, f.type() == migrate::FrameType::kStreamOpen ? 0 : 1);
      bytes.append(reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size());
    }
    ASSERT_TRUE(net::send_all(fd->get(), bytes));
    char c;
    EXPECT_LE(::recv(fd->get(), &c, 1, 0), 0) << "the destination answered a plain-TCP peer";
  }
  {
    auto fd = net::connect_to(at, 2s);
    ASSERT_TRUE(fd) << fd.message();
    auto forged_key = keys::random_secret();
    ASSERT_TRUE(forged_key);
    auto s = tls::handshake(fd->get(), tls::Role::kClient, tls::Psk{*forged_key}, tls::Clock::now() + 3s);
    EXPECT_FALSE(s) << "a TLS handshake with another key succeeded";
  }
  EXPECT_TRUE(dst->lines_matching("^HB ").empty()) << dst->stdout_text();
  EXPECT_EQ(state_of(dst_api), "incoming");
  auto src = boot(src_api);
  auto r = migrate(src_api, "127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(r.exit, 0) << r.stderr_text << r.json.dump(2) << dst->stderr_text();
  EXPECT_NE(r.json.value("tls", "").find("TLS"), std::string::npos) << r.json.dump(2);
  EXPECT_TRUE(dst->wait_line("^HB cpu=0 ", 20s)) << dst->stderr_text();
}

}  // namespace
}  // namespace minihv::test
