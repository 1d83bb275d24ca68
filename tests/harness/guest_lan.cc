#include "tests/harness/guest_lan.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace minihv::test {

namespace {

constexpr unsigned kLanOctet = 200;      // 10.<base>.200.0/24
constexpr unsigned kClientHost = 1;
constexpr unsigned kFirstGuest = 10;
constexpr unsigned kFirstHost = 100;
constexpr unsigned kMaxHosts = 8;
constexpr const char* kBridge = "lan";
constexpr const char* kUplink = "up0";   // a host's end of its veth to the hub

std::atomic<bool> g_lan_alive{false};

void must(const std::vector<std::string>& argv) {
  CmdResult r = run_cmd(argv);
  if (r.status == 0) return;
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  throw std::runtime_error("GuestLan: `" + cmd + "` failed (" + std::to_string(r.status) + "): " + r.err);
}

}  // namespace

GuestLan::GuestLan(unsigned hosts)
    : hosts_(hosts), base_(100 + static_cast<unsigned>(getpid()) % 100),
      hub_("mhv" + std::to_string(getpid()) + "lh") {
  if (hosts == 0 || hosts > kMaxHosts) throw std::invalid_argument("GuestLan: 1..8 hosts");
  if (g_lan_alive.exchange(true)) throw std::logic_error("GuestLan: one per process at a time");
  try {
    build();
  } catch (...) {
    teardown();
    g_lan_alive = false;
    throw;
  }
}

GuestLan::~GuestLan() {
  teardown();
  g_lan_alive = false;
}

std::string GuestLan::host(unsigned i) const { return "mhv" + std::to_string(getpid()) + "l" + std::to_string(i); }
static std::string lan_addr(unsigned base, unsigned host) {
  return "10." + std::to_string(base) + "." + std::to_string(kLanOctet) + "." + std::to_string(host);
}
std::string GuestLan::client_addr() const { return lan_addr(base_, kClientHost); }
std::string GuestLan::host_addr(unsigned i) const { return lan_addr(base_, kFirstHost + i); }
std::string GuestLan::guest_addr(unsigned n) const { return lan_addr(base_, kFirstGuest + n); }
std::vector<std::string> GuestLan::exec_prefix(unsigned i) const { return {"ip", "netns", "exec", host(i)}; }

void GuestLan::build() {
  std::vector<std::string> all{hub_};
  for (unsigned i = 0; i < hosts_; ++i) all.push_back(host(i));
  for (const auto& ns : all)  // a leftover of a dead process that had our pid
    if (std::filesystem::exists("/run/netns/" + ns)) must({"ip", "netns", "del", ns});
  must({"ip", "netns", "add", hub_});
  must({"ip", "-n", hub_, "link", "set", "lo", "up"});
  must({"ip", "-n", hub_, "link", "add", kBridge, "type", "bridge"});
  must({"ip", "-n", hub_, "link", "set", kBridge, "up"});
  must({"ip", "-n", hub_, "addr", "add", client_addr() + "/24", "dev", kBridge});
  for (unsigned i = 0; i < hosts_; ++i) {
    const std::string ns = host(i), hub_end = "h" + std::to_string(i);
    must({"ip", "netns", "add", ns});
    must({"ip", "-n", ns, "link", "set", "lo", "up"});
    must({"ip", "-n", hub_, "link", "add", hub_end, "type", "veth", "peer", "name", kUplink, "netns", ns});
    must({"ip", "-n", hub_, "link", "set", hub_end, "master", kBridge, "up"});
    must({"ip", "-n", ns, "link", "add", kBridge, "type", "bridge"});
    must({"ip", "-n", ns, "link", "set", kUplink, "master", kBridge, "up"});
    must({"ip", "-n", ns, "link", "set", kBridge, "up"});
    must({"ip", "-n", ns, "addr", "add", host_addr(i) + "/24", "dev", kBridge});
  }
}

void GuestLan::add_tap(unsigned i, const std::string& name, bool multi_queue) {
  std::vector<std::string> add{"ip", "-n", host(i), "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"};
  if (multi_queue) add.push_back("multi_queue");
  must(add);
  must({"ip", "-n", host(i), "link", "set", name, "master", kBridge, "up"});
}

void GuestLan::teardown() {
  for (unsigned i = 0; i < hosts_; ++i) (void)run_cmd({"ip", "netns", "del", host(i)});
  (void)run_cmd({"ip", "netns", "del", hub_});
}

UniqueFd socket_in(const std::string& ns, int type, int protocol) {
  if (ns.empty()) return UniqueFd(socket(AF_INET, type | SOCK_CLOEXEC, protocol));
  int fd = -1;
  std::thread([&] {
    UniqueFd nsfd(open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC));
    if (nsfd.valid() && setns(nsfd.get(), CLONE_NEWNET) == 0) fd = socket(AF_INET, type | SOCK_CLOEXEC, protocol);
  }).join();
  return UniqueFd(fd);
}

namespace {

constexpr uint16_t kPingId = 0x6d68;  // "mh"

uint16_t inet_checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool send_echo(int fd, const sockaddr_in& to, uint16_t seq) {
  uint8_t pkt[16] = {ICMP_ECHO, 0, 0, 0, kPingId >> 8, kPingId & 0xff,
                     static_cast<uint8_t>(seq >> 8), static_cast<uint8_t>(seq), 'm', 'i', 'n', 'i', 'h', 'v', '!', '!'};
  const uint16_t c = inet_checksum(pkt, sizeof pkt);
  pkt[2] = static_cast<uint8_t>(c >> 8);
  pkt[3] = static_cast<uint8_t>(c);
  return sendto(fd, pkt, sizeof pkt, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == sizeof pkt;
}

// One reply of ours (a raw ICMP socket hands us the IP header too), or false.
bool is_our_reply(const uint8_t* p, ssize_t n, const sockaddr_in& from, const sockaddr_in& to) {
  if (n < 20 || from.sin_addr.s_addr != to.sin_addr.s_addr) return false;
  const size_t ihl = (p[0] & 0x0f) * 4u;
  if (static_cast<size_t>(n) < ihl + 8) return false;
  const uint8_t* icmp = p + ihl;
  return icmp[0] == ICMP_ECHOREPLY && (icmp[4] << 8 | icmp[5]) == kPingId &&
         inet_checksum(icmp, static_cast<size_t>(n) - ihl) == 0;
}

}  // namespace

unsigned ping(const std::string& ns, const std::string& addr, unsigned count, std::chrono::milliseconds interval,
              std::chrono::milliseconds timeout) {
  UniqueFd fd = socket_in(ns, SOCK_RAW, IPPROTO_ICMP);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  if (!fd.valid() || inet_pton(AF_INET, addr.c_str(), &to.sin_addr) != 1) return 0;
  unsigned replies = 0;
  auto next = std::chrono::steady_clock::now();
  auto end = next + interval * count + timeout;
  for (uint16_t seq = 0;; ) {
    const auto now = std::chrono::steady_clock::now();
    if (seq < count && now >= next) {
      send_echo(fd.get(), to, seq++);
      next += interval;
      continue;
    }
    if (now >= end || replies == count) return replies;
    const auto wait = std::min(seq < count ? next : end, end) - now;
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()) + 1) <= 0)
      continue;
    uint8_t buf[1500];
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = recvfrom(fd.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &len);
    if (is_our_reply(buf, n, from, to)) ++replies;
  }
}

}  // namespace minihv::test
