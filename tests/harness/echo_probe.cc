#include "tests/harness/echo_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tests/harness/guest_lan.h"

namespace minihv::test {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMsgLen = 9;  // "%08u\n"
constexpr int kPollMs = 50;    // how often the receiver looks at receiving_

void message(uint64_t i, char out[kMsgLen + 1]) {
  std::snprintf(out, kMsgLen + 1, "%08u\n", static_cast<unsigned>(i % 100000000));
}

bool connect_once(int fd, const sockaddr_in& sa, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
  timeval none{};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  return ok;
}

}  // namespace

std::unique_ptr<EchoProbe> EchoProbe::start(Kind kind, const std::string& ns, const std::string& addr, int port,
                                            std::chrono::microseconds period, std::chrono::milliseconds timeout,
                                            std::string& why) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) {
    why = "not an IPv4 address: " + addr;
    return nullptr;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    UniqueFd fd = socket_in(ns, kind == Kind::kTcp ? SOCK_STREAM : SOCK_DGRAM);
    if (!fd.valid()) {
      why = "no socket in namespace " + ns + ": " + std::strerror(errno);
      return nullptr;
    }
    if (connect_once(fd.get(), sa, std::chrono::milliseconds(500))) {
      const int one = 1;
      if (kind == Kind::kTcp) setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return std::unique_ptr<EchoProbe>(new EchoProbe(kind, std::move(fd), period));
    }
    why = "connect to " + addr + ":" + std::to_string(port) + ": " + std::strerror(errno);
    if (Clock::now() > deadline) return nullptr;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

EchoProbe::EchoProbe(Kind kind, UniqueFd fd, std::chrono::microseconds period)
    : kind_(kind), fd_(std::move(fd)), period_(period), last_arrival_(Clock::now()), mark_(last_arrival_) {
  sender_ = std::thread([this] { send_loop(); });
  receiver_ = std::thread([this] { receive_loop(); });
}

EchoProbe::~EchoProbe() {
  sending_ = receiving_ = false;
  shutdown(fd_.get(), SHUT_RDWR);  // wakes a sender blocked in a full window
  if (sender_.joinable()) sender_.join();
  if (receiver_.joinable()) receiver_.join();
}

void EchoProbe::send_loop() {
  auto next = Clock::now();
  char msg[kMsgLen + 1];
  for (uint64_t i = 0; sending_; ++i) {
    message(i, msg);
    if (send(fd_.get(), msg, kMsgLen, MSG_NOSIGNAL) != static_cast<ssize_t>(kMsgLen)) {
      if (sending_) fail(std::string("send: ") + std::strerror(errno), kind_ == Kind::kTcp);
      return;
    }
    sent_ = i + 1;
    next += period_;
    std::this_thread::sleep_until(next);
  }
}

void EchoProbe::receive_loop() {
  char buf[4096];
  while (receiving_) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, kPollMs) <= 0) continue;
    const ssize_t n = recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0 && kind_ == Kind::kUdp && errno == ECONNREFUSED) continue;  // an ICMP while moving
    if (n <= 0) {
      if (receiving_) fail(n == 0 ? "the guest closed the connection" : std::string("recv: ") + std::strerror(errno), true);
      return;
    }
    if (kind_ == Kind::kTcp) take_tcp(buf, static_cast<size_t>(n));
    else take_udp(buf, static_cast<size_t>(n));
  }
}

void EchoProbe::take_tcp(const char* data, size_t n) {
  std::lock_guard lock(mu_);
  char msg[kMsgLen + 1];
  for (size_t i = 0; i < n && !report_.bad; ++i, ++tcp_pos_) {
    message(tcp_pos_ / kMsgLen, msg);
    if (data[i] != msg[tcp_pos_ % kMsgLen]) {
      report_.bad = 1;
      if (report_.error.empty()) report_.error = "echo byte " + std::to_string(tcp_pos_) + " is not the byte sent";
    }
  }
  echoed_ = tcp_pos_ / kMsgLen;
  arrived();
}

void EchoProbe::take_udp(const char* data, size_t n) {
  std::lock_guard lock(mu_);
  unsigned seq = 0;
  if (n != kMsgLen || std::sscanf(data, "%08u", &seq) != 1) ++report_.bad;
  else ++echoed_;
  arrived();
}

void EchoProbe::arrived() {
  const auto now = Clock::now();
  const auto gap = std::chrono::duration_cast<std::chrono::microseconds>(now - last_arrival_);
  report_.max_gap = std::max(report_.max_gap, gap);
  mark_gap_ = std::max(mark_gap_, gap);  // mark() starts it over
  last_arrival_ = now;
}

void EchoProbe::fail(const std::string& why, bool reset) {
  std::lock_guard lock(mu_);
  if (report_.error.empty()) report_.error = why;
  report_.reset = report_.reset || reset;
}

void EchoProbe::mark() {
  std::lock_guard lock(mu_);
  mark_ = Clock::now();
  mark_gap_ = std::chrono::microseconds(0);
}

std::chrono::microseconds EchoProbe::max_gap_since_mark() const {
  std::lock_guard lock(mu_);
  return mark_gap_;
}

EchoReport EchoProbe::finish(std::chrono::milliseconds drain) {
  sending_ = false;
  if (sender_.joinable()) sender_.join();
  const auto deadline = Clock::now() + drain;
  while (Clock::now() < deadline && echoed_.load() < sent_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  receiving_ = false;
  if (receiver_.joinable()) receiver_.join();
  std::lock_guard lock(mu_);
  EchoReport r = report_;
  r.sent = sent_.load();
  r.echoed = echoed_.load();
  return r;
}

}  // namespace minihv::test
