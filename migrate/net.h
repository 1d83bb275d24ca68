// migrate/net.h — plain socket set-up for the transport (module-internal): resolving, connecting with
// a timeout, listening, per-connection options. The data path is io_uring's (transport.cc).
#pragma once

#include <chrono>
#include <string>

#include "common/fd.h"
#include "common/status.h"
#include "migrate/transport.h"

namespace minihv::migrate::net {

// Connects to the first address `ep` resolves to that answers within `timeout`.
Result<UniqueFd> connect_to(const Endpoint& ep, std::chrono::milliseconds timeout);
// A non-blocking listening socket bound to `ep`.
Result<UniqueFd> listen_on(const Endpoint& ep);
// TCP_NODELAY, TCP_USER_TIMEOUT (a peer that stops acking is an error after `io_timeout`), keepalive.
void tune_stream(int fd, std::chrono::milliseconds io_timeout);
// Local port of a bound socket.
uint16_t local_port(int fd);

}  // namespace minihv::migrate::net
