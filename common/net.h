// common/net.h — stream sockets for every module: endpoints ("host:port"), TCP listen/connect with a
// timeout, per-connection options, Unix socket addresses, writing a whole buffer.
//
// Owns: resolving, the connect timeout, socket options. Must not know: what travels on the socket
// (migration frames are migrate/transport.h's, JSON lines are common/jsonl.h's).
#pragma once

#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace minihv::net {

struct Endpoint {
  std::string host;   // name or address; "[::1]" brackets are stripped
  uint16_t port = 0;
  std::string text() const;  // "host:port"
};
// "host:port" or "[v6addr]:port"; port 0 is allowed for listen (tests pick a free port).
Result<Endpoint> parse_endpoint(std::string_view host_port);
// "a:1,b:2" (the --to flag), in order.
Result<std::vector<Endpoint>> parse_endpoint_list(std::string_view comma_separated);

// Connects to the first address `ep` resolves to that answers within `timeout`. The socket is blocking.
Result<UniqueFd> connect_to(const Endpoint& ep, std::chrono::milliseconds timeout);
// A non-blocking listening socket bound to `ep`.
Result<UniqueFd> listen_on(const Endpoint& ep);
// TCP_NODELAY, TCP_USER_TIMEOUT (a peer that stops acking is an error after `io_timeout`), keepalive.
void tune_stream(int fd, std::chrono::milliseconds io_timeout);
// A send that cannot hand its bytes to the kernel within `timeout` fails (SO_SNDTIMEO; any stream socket).
void set_send_timeout(int fd, std::chrono::milliseconds timeout);
// Local port of a bound socket.
uint16_t local_port(int fd);

// The address of a Unix socket file; invalid-input when the path does not fit.
Result<sockaddr_un> unix_address(const std::string& path);
// A connected Unix stream socket; the error names `what` (e.g. "the VM's control socket").
Result<UniqueFd> connect_unix(const std::string& path, const std::string& what);

// Writes all of `bytes` (no SIGPIPE: a peer gone is an error).
Status send_all(int fd, std::string_view bytes);

}  // namespace minihv::net
