// cluster/rpc.h — how nodes and the `minihv cluster` CLI talk: JSON lines (common/jsonl.h, the VM
// control socket's protocol: one object per line each way, progress lines in between) over TCP.
//
// Owns: the node's network policy — how many peers at once, how long a silent peer keeps its
// connection, how long a connect may take — and turning {"ok": false} replies into a Status.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/timings.h"
#include "common/jsonl.h"
#include "common/status.h"

namespace minihv::cluster {

// A node serves the CLI and every other node; a peer silent this long between requests (a node
// that died without closing) gives its slot back, and so does one that takes in no reply.
inline constexpr jsonl::Limits kNodeRpcLimits{.max_line_bytes = jsonl::kDefaultMaxRequestBytes,
                                              .read_timeout = timings::kRpcIdle,
                                              .max_connections = 64,
                                              .write_timeout = timings::kRpcWrite};

// Serves `handler` on HOST:PORT (every request on its own thread).
Result<std::unique_ptr<jsonl::Server>> serve_tcp(const std::string& host_port, jsonl::Handler handler);

// One request to a node; intermediate progress lines go to `on_progress`. A reply {"ok": false,
// "error": E} becomes an error status with E (invalid-input when the reply says "invalid": true).
// `timeout` is the longest silence (a progress line restarts it).
Result<nlohmann::json> node_call(const std::string& host_port, const nlohmann::json& request,
                                 std::chrono::milliseconds timeout = timings::kRpcCallTimeout,
                                 const std::function<void(const nlohmann::json&)>& on_progress = {});

// Connect + {"cmd":"ping"} round trip in milliseconds (validate's reachability check).
Result<double> ping(const std::string& host_port, std::chrono::milliseconds timeout);

// The reply for a failed request.
nlohmann::json error_reply(const Status& s);

}  // namespace minihv::cluster
