// cluster/rpc.h — how nodes and the `minihv cluster` CLI talk: JSON lines (common/jsonl.h, the VM
// control socket's protocol: one object per line each way, progress lines in between) over TCP,
// always inside TLS 1.3 keyed by the node-RPC key derived from the cluster key (common/keys.h).
// A peer without the key finishes no handshake, so it can send no request at all.
//
// Owns: the node's network policy — how many peers at once and per address, how long a silent
// peer keeps its connection, how long a connect and a handshake may take — the node-RPC key, and
// turning {"ok": false} replies and refused handshakes into a Status.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/timings.h"
#include "common/jsonl.h"
#include "common/keys.h"
#include "common/status.h"
#include "common/tls.h"

namespace minihv::cluster {

// A node serves the CLI and every other node; a peer silent this long between requests (a node
// that died without closing) gives its slot back, and so does one that takes in no reply. One
// address may hold kMaxPerPeer of the slots: a host flooding the port leaves the rest to others.
inline constexpr unsigned kMaxPerPeer = 16;  // the CLI and a few nodes on one host share an address
inline constexpr jsonl::Limits kNodeRpcLimits{.max_line_bytes = jsonl::kDefaultMaxRequestBytes,
                                              .read_timeout = timings::kRpcIdle,
                                              .max_connections = 64,
                                              .write_timeout = timings::kRpcWrite,
                                              .max_per_peer = kMaxPerPeer};

// The key every node RPC connection is made with: keys::derive(cluster key, kNodeRpcLabel).
using RpcKey = tls::Psk;
Result<RpcKey> node_rpc_key(const keys::Secret& cluster_key);
// The same for another service that speaks this RPC with its own label (keys.h): pcmk's receiver.
Result<RpcKey> rpc_key(const keys::Secret& cluster_key, std::string_view label);

// Serves `handler` on HOST:PORT (every request on its own thread), TLS only, with `key`.
Result<std::unique_ptr<jsonl::Server>> serve_tcp(const std::string& host_port, const RpcKey& key,
                                                 jsonl::Handler handler);

// One request to a node; intermediate progress lines go to `on_progress`. A reply {"ok": false,
// "error": E} becomes an error status with E (invalid-input when the reply says "invalid": true).
// `timeout` is the longest silence (a progress line restarts it). A node that refuses the
// handshake is named: "node H:P refused the handshake: it does not hold this cluster's key".
Result<nlohmann::json> node_call(const RpcKey& key, const std::string& host_port, const nlohmann::json& request,
                                 std::chrono::milliseconds timeout = timings::kRpcCallTimeout,
                                 const std::function<void(const nlohmann::json&)>& on_progress = {});

// Connect + handshake + {"cmd":"ping"} round trip in milliseconds (validate's reachability check).
Result<double> ping(const RpcKey& key, const std::string& host_port, std::chrono::milliseconds timeout);

// The reply for a failed request.
nlohmann::json error_reply(const Status& s);

}  // namespace minihv::cluster
