// tests/harness/guest_lan.h — a LAN for guests with virtio-net, and a client that talks to them.
//
// A hub namespace holds the LAN's bridge and the client's address (10.<base>.200.1/24). Each host
// is a namespace with a bridge of its own, joined to the hub's by a veth, carrying the host's
// address (10.<base>.200.(100+i)), so hosts migrate VMs over the same LAN, as a lab would. The VMs'
// taps go on their host's bridge (add_tap); guests take 10.<base>.200.(10+n). Nothing touches the
// host's own namespace. One GuestLan per process at a time: the names carry the pid.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/fd.h"
#include "tests/harness/netns.h"

namespace minihv::test {

class GuestLan {
public:
  explicit GuestLan(unsigned hosts);  // throws std::runtime_error naming the failed command
  ~GuestLan();
  GuestLan(const GuestLan&) = delete;
  GuestLan& operator=(const GuestLan&) = delete;

  std::string hub() const { return hub_; }                 // where the client lives
  std::string host(unsigned i) const;                      // "mhv<pid>l<i>"
  std::string client_addr() const;                         // 10.<base>.200.1
  std::string host_addr(unsigned i) const;                 // 10.<base>.200.(100+i)
  std::string guest_addr(unsigned n) const;                // 10.<base>.200.(10+n)
  // A persistent tap `name` in host i's namespace, on its bridge and up; it stays until the lab
  // goes, so a VM that ends or moves away leaves no hole for the next one. `multi_queue`: for a NIC
  // with queues=N > 1.
  void add_tap(unsigned i, const std::string& name, bool multi_queue = false);
  std::vector<std::string> exec_prefix(unsigned i) const;  // {"ip", "netns", "exec", host(i)}

private:
  void build();
  void teardown();
  unsigned hosts_, base_;
  std::string hub_;
};

// A socket of `type` (SOCK_STREAM/SOCK_DGRAM) that lives in namespace `ns` (made by a thread that
// joined it; "" = our own namespace); blocking, close-on-exec.
UniqueFd socket_in(const std::string& ns, int type, int protocol = 0);

// Sends `count` ICMP echo requests from namespace `ns` to `addr` (one every `interval`) over a raw
// socket and returns how many matching replies came back within `timeout` of the last request.
unsigned ping(const std::string& ns, const std::string& addr, unsigned count,
              std::chrono::milliseconds interval, std::chrono::milliseconds timeout);

}  // namespace minihv::test
