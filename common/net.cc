#include "common/net.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <charconv>
#include <cstring>
#include <memory>

namespace minihv::net {

std::string Endpoint::text() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<Endpoint> parse_endpoint(std::string_view s) {
  auto bad = [&](const char* why) {
    return Status::invalid("'" + std::string(s) + "' is not HOST:PORT (" + why + ")");
  };
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("no host");
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535)
    return bad("port must be 0..65535");
  return Endpoint{std::string(host), static_cast<uint16_t>(p)};
}

Result<std::vector<Endpoint>> parse_endpoint_list(std::string_view list) {
  std::vector<Endpoint> out;
  while (true) {
    size_t comma = list.find(',');
    auto ep = parse_endpoint(list.substr(0, comma));
    if (!ep) return ep.status();
    out.push_back(std::move(ep).value());
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

namespace {

struct AddrInfoDeleter {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using AddrInfo = std::unique_ptr<addrinfo, AddrInfoDeleter>;

constexpr int kBacklog = 64;  // connections the kernel queues before accept

Result<AddrInfo> resolve(const Endpoint& ep, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(ep.host.c_str(), std::to_string(ep.port).c_str(), &hints, &res);
  if (rc != 0) return Status::error("cannot resolve " + ep.text() + ": " + gai_strerror(rc));
  return AddrInfo(res);
}

Status connect_one(const addrinfo* ai, std::chrono::milliseconds timeout, UniqueFd& out) {
  UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
  if (!fd.valid()) return Status::from_errno("socket");
  if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return Status::from_errno("connect");
    pollfd p{fd.get(), POLLOUT, 0};
    int n;
    do n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (n < 0 && errno == EINTR);
    if (n < 0) return Status::from_errno("poll");
    if (n == 0) return Status::error("no answer within " + std::to_string(timeout.count()) + " ms");
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return Status::from_errno("connect", err);
  }
  // Back to blocking: io_uring copes with either, and a blocking socket lets it wait in the kernel.
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  out = std::move(fd);
  return Status::ok();
}

}  // namespace

Result<UniqueFd> connect_to(const Endpoint& ep, std::chrono::milliseconds timeout) {
  auto ai = resolve(ep, false);
  if (!ai) return ai.status();
  Status last = Status::error("no address");
  for (const addrinfo* a = ai->get(); a; a = a->ai_next) {
    UniqueFd fd;
    last = connect_one(a, timeout, fd);
    if (last) return fd;
  }
  return last;
}

Result<UniqueFd> listen_on(const Endpoint& ep) {
  auto ai = resolve(ep, true);
  if (!ai) return ai.status();
  Status last = Status::error("no address");
  for (const addrinfo* a = ai->get(); a; a = a->ai_next) {
    UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last = Status::from_errno("socket");
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
      last = Status::from_errno("bind " + ep.text());
      continue;
    }
    if (::listen(fd.get(), kBacklog) != 0) {
      last = Status::from_errno("listen " + ep.text());
      continue;
    }
    return fd;
  }
  return last;
}

void tune_stream(int fd, std::chrono::milliseconds io_timeout) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  unsigned ms = static_cast<unsigned>(io_timeout.count());
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

void set_send_timeout(int fd, std::chrono::milliseconds timeout) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timeval tv{static_cast<time_t>(s.count()), static_cast<suseconds_t>((timeout - s).count() * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Status::invalid("socket path '" + path + "' is empty or longer than " +
                           std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<UniqueFd> connect_unix(const std::string& path, const std::string& what) {
  auto addr = unix_address(path);
  if (!addr) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0)
    return Status::from_errno("cannot reach " + what + " " + path);
  return fd;
}

Status send_all(int fd, std::string_view bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::from_errno("socket write");
    off += static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace minihv::net
