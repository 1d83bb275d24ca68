// tests/unit/net_test_netns.h — a private network namespace for one virtio-net unit test, and the
// host side of a tap in it.
//
// The test process never leaves its own namespace: a helper thread unshares a fresh one and keeps
// a handle to it; anything that must happen inside (opening the tap, a packet socket on it,
// `ip link del`) runs on a short-lived thread that enters it with setns(). The fds made there keep
// working from any thread. The namespace goes when the last fd of it closes: nothing to clean up,
// even after a crash. IPv6 is switched off inside, so the kernel sends nothing of its own on the tap.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"

namespace minihv::testing {

class TestNetns {
public:
  TestNetns() {
    std::thread([this] {
      if (::unshare(CLONE_NEWNET) != 0) return;
      ns_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
      for (const char* knob : {"/proc/sys/net/ipv6/conf/all/disable_ipv6",
                               "/proc/sys/net/ipv6/conf/default/disable_ipv6"}) {
        UniqueFd f(::open(knob, O_WRONLY | O_CLOEXEC));  // absent without IPv6: nothing to switch off
        if (f.valid() && ::write(f.get(), "1", 1) != 1) ns_.reset();  // IPv6 chatter would reach the tests
      }
    }).join();
  }
  bool valid() const { return ns_.valid(); }

  // Runs `f` on a thread inside the namespace and returns what it returned.
  template <typename F> auto run(F f) -> decltype(f()) {
    std::optional<decltype(f())> out;
    std::thread([&] {
      if (::setns(ns_.get(), CLONE_NEWNET) == 0) out.emplace(f());
    }).join();
    if (!out) std::abort();  // a namespace we made and hold must be enterable
    return std::move(*out);
  }

  // A shell command inside the namespace (the child inherits the calling thread's namespace).
  int sh(const std::string& cmd) {
    return run([&] { return std::system((cmd + " >/dev/null 2>&1").c_str()); });
  }

private:
  UniqueFd ns_;
};

// An AF_PACKET socket on one interface of a TestNetns: what the rest of the world sees of a tap.
class HostPort {
public:
  HostPort(TestNetns& ns, const std::string& ifname) {
    ns.run([&] {
      ifindex_ = static_cast<int>(::if_nametoindex(ifname.c_str()));
      fd_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
      sockaddr_ll sll{};
      sll.sll_family = AF_PACKET;
      sll.sll_protocol = htons(ETH_P_ALL);
      sll.sll_ifindex = ifindex_;
      if (ifindex_ == 0 || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) fd_.reset();
      return 0;
    });
  }
  bool valid() const { return fd_.valid(); }

  // Puts `frame` on the wire towards the tap (it comes out of the tap's fd).
  bool send(const std::vector<uint8_t>& frame) {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex_;
    sll.sll_halen = ETH_ALEN;
    std::copy(frame.begin(), frame.begin() + ETH_ALEN, sll.sll_addr);
    return ::sendto(fd_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&sll), sizeof sll) ==
           static_cast<ssize_t>(frame.size());
  }

  // The next frame written into the tap (by the device), or nothing within `ms`.
  std::optional<std::vector<uint8_t>> recv(int ms = 2000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      std::vector<uint8_t> buf(65536 + 64);
      sockaddr_ll from{};
      socklen_t len = sizeof from;
      const ssize_t n = ::recvfrom(fd_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n >= 0 && from.sll_pkttype != PACKET_OUTGOING) {
        buf.resize(static_cast<size_t>(n));
        return buf;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      (void)::poll(&p, 1, static_cast<int>(left.count()));
    }
  }

private:
  UniqueFd fd_;
  int ifindex_ = 0;
};

}  // namespace minihv::testing
