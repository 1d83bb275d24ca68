// `minihv node --metrics`: a real node serves Prometheus text over HTTP; a VM, a live move, a
// failover and the lease renewals show in it; requests that are too big, too slow or for anything else get nothing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "common/fd.h"
#include "tests/harness/cluster_lab.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

struct HttpResult {
  bool connected = false;
  std::string reply;                   // everything the server sent before it closed
  std::chrono::milliseconds took{0};   // from connecting to the close
};

// Sends `request` and reads what comes back until the server closes (or 10 s of silence).
HttpResult http(int port, const std::string& request) {
  HttpResult r;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto t0 = std::chrono::steady_clock::now();
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return r;
  r.connected = true;
  (void)!::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 10'000) <= 0) break;
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    r.reply.append(buf, static_cast<size_t>(n));
  }
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  return r;
}

std::string scrape(int port) { return http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").reply; }

// The value of the sample line `series` (name and labels exactly), or -1.
double value_of(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

class NodeMetrics : public ::testing::Test {
protected:
  void start(unsigned i) {
    std::vector<std::string> args = lab_.node_args(i);
    args.insert(args.end(), {"--metrics", "127.0.0.1:" + std::to_string(ports_[i])});
    nodes_[i] = std::make_unique<VmProcess>(args);
    ASSERT_TRUE(wait_for([&] { return http(ports_[i], "GET /metrics HTTP/1.1\r\n\r\n").connected; }, 20s))
        << nodes_[i]->stderr_text();
  }
  ClusterLab lab_{0};
  int ports_[2] = {free_port(), free_port()};
  std::unique_ptr<VmProcess> nodes_[2];
};

TEST_F(NodeMetrics, ServesTheNodeInPrometheusText) {
  start(0);
  const HttpResult r = http(ports_[0], "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(r.reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r.reply;
  EXPECT_NE(r.reply.find("\r\nContent-Type: text/plain; version=0.0.4\r\n"), std::string::npos) << r.reply;
  const std::string body = r.reply.substr(r.reply.find("\r\n\r\n") + 3);
  EXPECT_EQ(value_of(body, "minihv_node_info{node=\"n0\",version=\"0.1\"}"), 1) << body;
  EXPECT_EQ(value_of(body, "minihv_vms{state=\"running\"}"), 0) << body;
  EXPECT_EQ(value_of(body, "minihv_failovers_total"), 0) << body;
  // The node lease renews every 200 ms: a second brings a few observations.
  EXPECT_TRUE(wait_for([&] { return value_of(scrape(ports_[0]), "minihv_node_lease_renewal_seconds_count") >= 3; }, 5s))
      << scrape(ports_[0]);
  const std::string later = scrape(ports_[0]);
  EXPECT_EQ(value_of(later, "minihv_node_lease_renewal_seconds_bucket{le=\"+Inf\"}"),
            value_of(later, "minihv_node_lease_renewal_seconds_count"));
  EXPECT_GT(value_of(later, "minihv_node_lease_renewal_seconds_sum"), 0);
}

TEST_F(NodeMetrics, AnythingButGetMetricsIs404) {
  start(0);
  for (const char* req : {"GET / HTTP/1.1\r\n\r\n", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                          "GET /metrics/x HTTP/1.1\r\n\r\n"}) {
    const HttpResult r = http(ports_[0], req);
    EXPECT_EQ(r.reply.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << req << "\n" << r.reply;
  }
}

TEST_F(NodeMetrics, ATooBigOrTooSlowRequestIsClosedUnanswered) {
  start(0);
  const HttpResult big = http(ports_[0], "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(9000, 'a') + "\r\n\r\n");
  EXPECT_TRUE(big.connected);
  EXPECT_EQ(big.reply, "") << "more than 8 KiB of request head";
  EXPECT_LT(big.took, 1500ms);
  const HttpResult slow = http(ports_[0], "GET /metrics HTTP/1.1\r\n");  // never finishes its head
  EXPECT_EQ(slow.reply, "");
  EXPECT_GE(slow.took, 1900ms);
  EXPECT_LT(slow.took, 4000ms);
  EXPECT_NE(scrape(ports_[0]).find("minihv_node_info"), std::string::npos) << "the server goes on";
}

TEST_F(NodeMetrics, AVmItsLiveMoveAndAFailoverAreCounted) {
  start(0);
  start(1);
  // Metrics answer before the node has joined; the control servers only after.
  ASSERT_TRUE(lab_.wait_status(0, 20s, [](const nlohmann::json& st) {
    if (st["nodes"].size() != 2) return false;
    for (const auto& n : st["nodes"])
      if (n.value("state", "") != "up") return false;
    return true;
  }));
  auto add = lab_.add_vm("web", "idle", {"--preferred", "n0"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  EXPECT_TRUE(wait_for([&] { return value_of(scrape(ports_[0]), "minihv_vm_up{vm=\"web\"}") == 1; }, 10s))
      << scrape(ports_[0]);
  EXPECT_EQ(value_of(scrape(ports_[0]), "minihv_vms{state=\"running\"}"), 1);
  ASSERT_TRUE(lab_.wait_status(0, 20s, [](const nlohmann::json& st) {  // its guest runs: it can move
    return ClusterLab::vm_local(st, "web").value("heartbeats", 0) > 0;
  }));
  auto mv = lab_.cli(0, {"move", "web", "--to", "n1"});
  ASSERT_EQ(mv.status, 0) << mv.out << mv.err;
  const std::string src = scrape(ports_[0]);
  EXPECT_EQ(value_of(src, "minihv_migrations_started_total"), 1) << src;
  EXPECT_EQ(value_of(src, "minihv_migrations_succeeded_total"), 1) << src;
  EXPECT_EQ(value_of(src, "minihv_migrations_failed_total"), 0) << src;
  EXPECT_EQ(value_of(src, "minihv_migration_downtime_seconds_count"), 1) << src;
  EXPECT_EQ(src.find("minihv_vm_up{vm=\"web\"}"), std::string::npos) << "it left n0";
  EXPECT_TRUE(wait_for([&] { return value_of(scrape(ports_[1]), "minihv_vm_up{vm=\"web\"}") == 1; }, 10s))
      << scrape(ports_[1]);
  EXPECT_EQ(value_of(scrape(ports_[1]), "minihv_migrations_started_total"), 0) << "counted on the source only";
  // n1 dies with the VM: n0 restarts it, and that is a failover of n0's.
  auto drill = lab_.cli(0, {"drill", "--kill", "n1", "--yes", "--timeout", "30"});
  ASSERT_EQ(drill.status, 0) << drill.out << drill.err;
  EXPECT_EQ(value_of(scrape(ports_[0]), "minihv_failovers_total"), 1) << scrape(ports_[0]);
  EXPECT_EQ(value_of(scrape(ports_[0]), "minihv_vm_up{vm=\"web\"}"), 1);
}

}  // namespace
}  // namespace minihv::test
