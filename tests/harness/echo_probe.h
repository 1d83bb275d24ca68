// tests/harness/echo_probe.h — a client that keeps talking to a guest's echo service (RFC 862,
// port 7) and measures what a migration does to the conversation.
//
// TCP: one connection; a numbered 9-byte message ("%08u\n") every period; every byte that comes
// back must be the next byte of what was sent. UDP: one numbered datagram every period; answers
// are counted (UDP may lose them). Both record arrival gaps: the largest since mark() is what a
// migration cost the guest's peer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/fd.h"

namespace minihv::test {

struct EchoReport {
  uint64_t sent = 0;      // messages
  uint64_t echoed = 0;    // TCP: complete messages back in order; UDP: datagrams back
  uint64_t bad = 0;       // TCP: 1 once a byte differs; UDP: answers that are no message of ours
  bool reset = false;     // TCP: the connection ended or was reset
  std::string error;      // the first thing that went wrong, empty if nothing
  std::chrono::microseconds max_gap{0};  // largest gap between two answers, whole run
};

class EchoProbe {
public:
  enum class Kind { kTcp, kUdp };
  // Connects from namespace `ns` (retrying for up to `timeout`: the guest may still be coming up)
  // and starts sending every `period`. nullptr with `why` set when no connection was made.
  static std::unique_ptr<EchoProbe> start(Kind kind, const std::string& ns, const std::string& addr,
                                          int port, std::chrono::microseconds period,
                                          std::chrono::milliseconds timeout, std::string& why);
  ~EchoProbe();
  // Starts a new gap window; max_gap_since_mark() is the largest gap between answers since then
  // (including the time from the last answer before the mark to the first after it).
  void mark();
  std::chrono::microseconds max_gap_since_mark() const;
  uint64_t echoed() const { return echoed_.load(); }
  // Stops sending, waits up to `drain` for the echoes still due, and reports.
  EchoReport finish(std::chrono::milliseconds drain);

private:
  EchoProbe(Kind kind, UniqueFd fd, std::chrono::microseconds period);
  void send_loop();
  void receive_loop();
  void take_tcp(const char* data, size_t n);
  void take_udp(const char* data, size_t n);
  void arrived();
  void fail(const std::string& why, bool reset);

  const Kind kind_;
  UniqueFd fd_;
  const std::chrono::microseconds period_;
  std::atomic<bool> sending_{true}, receiving_{true};
  std::atomic<uint64_t> sent_{0}, echoed_{0};

  mutable std::mutex mu_;  // everything below
  EchoReport report_;
  uint64_t tcp_pos_ = 0;   // bytes of the TCP stream checked so far
  std::chrono::steady_clock::time_point last_arrival_{}, mark_{};
  std::chrono::microseconds mark_gap_{0};

  std::thread sender_, receiver_;
};

}  // namespace minihv::test
