// tests/loopback_connect.h — a TCP connection to a loopback port from a chosen loopback address
// (127.0.0.2 is "another host" to a per-address limit). Shared by the unit and integration tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "common/fd.h"

namespace minihv::testnet {

// Binds to `from` (an IPv4 loopback address, text), then connects to 127.0.0.1:`port`, blocking.
// An invalid fd when either fails (errno says why).
inline UniqueFd connect_loopback(uint16_t port, const char* from = "127.0.0.1") {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (::inet_pton(AF_INET, from, &a.sin_addr) != 1 ||
      ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return UniqueFd();
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  return fd;
}

}  // namespace minihv::testnet
