// NetLab: a namespace per node, bridged networks, links that go down and up, tc shaping, minihv
// inside a node, and nothing left behind.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

#include "common/fd.h"
#include "tests/harness/guest_lan.h"
#include "tests/harness/netns.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr int kClosedPort = 9;  // discard: nothing listens on it in a fresh namespace

// What a TCP connect from inside `ns` to addr:port met. A live host with nothing on the port
// answers with a RST, which proves the round trip as well as ping would (and ping is not a
// dependency); silence until the timeout means there is no path.
enum class Probe { accepted, refused, silent };
Probe probe(const std::string& ns, const std::string& addr, int port,
            std::chrono::milliseconds timeout = 1s) {
  UniqueFd s = socket_in(ns, SOCK_STREAM | SOCK_NONBLOCK);
  EXPECT_TRUE(s.valid()) << "no socket in namespace " << ns << ": " << std::strerror(errno);
  if (!s.valid()) return Probe::silent;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(inet_pton(AF_INET, addr.c_str(), &sa.sin_addr), 1) << addr;
  if (connect(s.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0) return Probe::accepted;
  if (errno == ECONNREFUSED) return Probe::refused;
  if (errno != EINPROGRESS) return Probe::silent;  // e.g. no route: the link is down on this side
  pollfd p{s.get(), POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return Probe::silent;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0 ? Probe::accepted : err == ECONNREFUSED ? Probe::refused : Probe::silent;
}

bool reaches(const NetLab& lab, unsigned from, unsigned to, unsigned network) {
  return probe(lab.ns(from), lab.addr(to, network), kClosedPort) != Probe::silent;
}

// A link that just came up may need a fresh ARP exchange: retry until a deadline.
bool reaches_within(const NetLab& lab, unsigned from, unsigned to, unsigned network,
                    std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  do {
    if (reaches(lab, from, to, network)) return true;
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

// The namespaces `ip netns list` shows whose names start with mhv<our pid>.
std::vector<std::string> our_namespaces() {
  CmdResult r = run_cmd({"ip", "netns", "list"});
  EXPECT_EQ(r.status, 0) << r.err;
  const std::string mine = "mhv" + std::to_string(getpid());
  std::vector<std::string> names;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    const std::string name = line.substr(0, line.find(' '));
    const bool ours = name.rfind(mine, 0) == 0 && name.size() > mine.size() &&
                      !std::isdigit(static_cast<unsigned char>(name[mine.size()]));  // not mhv<pid>7...
    if (ours) names.push_back(name);
  }
  return names;
}

// How many `tbf ... rate 1Gbit` qdiscs `tc qdisc show` lists inside the node.
int gigabit_qdiscs(const NetLab& lab, unsigned node) {
  std::vector<std::string> argv = lab.exec_prefix(node);
  argv.insert(argv.end(), {"tc", "qdisc", "show"});
  CmdResult r = run_cmd(argv);
  EXPECT_EQ(r.status, 0) << r.err;
  int n = 0;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line))
    if (line.find("qdisc tbf") != std::string::npos && line.find("rate 1Gbit") != std::string::npos) ++n;
  return n;
}

TEST(NetLab, NamesAndAddressesFollowThePid) {
  NetLab lab(3, 2);
  const std::string pid = std::to_string(getpid());
  const std::string base = std::to_string(100 + getpid() % 100);
  EXPECT_EQ(lab.ns(0), "mhv" + pid + "n0");
  EXPECT_EQ(lab.ns(2), "mhv" + pid + "n2");
  EXPECT_EQ(lab.addr(0, 0), "10." + base + ".0.1");
  EXPECT_EQ(lab.addr(2, 1), "10." + base + ".1.3");
  EXPECT_EQ(lab.exec_prefix(1), (std::vector<std::string>{"ip", "netns", "exec", lab.ns(1)}));
}

TEST(NetLab, EveryNodeReachesEveryOtherOnEveryNetwork) {
  NetLab lab(3, 2);
  for (unsigned from = 0; from < 3; ++from) {
    EXPECT_EQ(probe(lab.ns(from), "127.0.0.1", kClosedPort), Probe::refused) << "lo is down in node " << from;
    for (unsigned to = 0; to < 3; ++to) {
      if (to == from) continue;
      for (unsigned k = 0; k < 2; ++k)
        EXPECT_TRUE(reaches(lab, from, to, k)) << from << " -> " << lab.addr(to, k);
    }
  }
}

TEST(NetLab, LinkDownCutsOnlyThatNetworkAndUpRestoresIt) {
  NetLab lab(3, 2);
  ASSERT_TRUE(reaches(lab, 0, 2, 0));
  ASSERT_TRUE(reaches(lab, 0, 2, 1));

  lab.set_link(2, 1, false);
  EXPECT_FALSE(reaches(lab, 0, 2, 1));
  EXPECT_FALSE(reaches(lab, 2, 0, 1));
  EXPECT_TRUE(reaches(lab, 0, 2, 0));
  EXPECT_TRUE(reaches(lab, 0, 1, 1)) << "node 2's link took down another node's";

  lab.set_link(2, 1, true);
  EXPECT_TRUE(reaches_within(lab, 0, 2, 1, 10s));
  EXPECT_TRUE(reaches(lab, 2, 0, 1));
}

TEST(NetLab, DestructorRemovesTheNamespaces) {
  {
    NetLab lab(3, 2, true);
    EXPECT_EQ(our_namespaces().size(), 4u) << "three nodes and the hub";
  }
  EXPECT_TRUE(our_namespaces().empty());
  NetLab again(2, 1);  // the names are free for the next lab
  EXPECT_TRUE(reaches(again, 0, 1, 0));
}

TEST(NetLab, GigabitShapesEveryVeth) {
  {
    NetLab plain(2, 2);
    EXPECT_EQ(gigabit_qdiscs(plain, 0), 0);
  }
  NetLab lab(3, 2, true);
  for (unsigned i = 0; i < 3; ++i) EXPECT_EQ(gigabit_qdiscs(lab, i), 2) << "node " << i;
  EXPECT_TRUE(reaches(lab, 0, 2, 1));
}

TEST(NetLab, NsProcessRunsMinihvInsideTheNode) {
  NetLab lab(2, 2);
  // The address exists only in node 1's namespace: binding it proves where minihv runs.
  const std::string listen = lab.addr(1, 1) + ":7001";
  NsProcess dst(lab, 1, {"run", "--mem", "64M", "--incoming", listen});
  ASSERT_TRUE(dst.wait_stderr("waiting for a migrating VM on " + listen, 20s)) << dst.stderr_text();
  EXPECT_EQ(probe(lab.ns(0), lab.addr(1, 1), 7001), Probe::accepted);
  dst.kill(SIGKILL);
  EXPECT_TRUE(dst.wait_exit(10s).has_value());
}

}  // namespace
}  // namespace minihv::test
