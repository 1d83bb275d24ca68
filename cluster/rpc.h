// cluster/rpc.h — how nodes and the `minihv cluster` CLI talk: the VM control socket's protocol
// (one JSON object per line each way, progress lines in between) over TCP.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "vmm/api.h"

namespace minihv::cluster {

// Serves `handler` on HOST:PORT (every request on its own thread).
Result<std::unique_ptr<ApiServer>> serve_tcp(const std::string& host_port, ApiServer::Handler handler);

// One request to a node; intermediate progress lines go to `on_progress`. A reply {"ok": false,
// "error": E} becomes an error status with E (invalid-input when the reply says "invalid": true).
Result<nlohmann::json> node_call(const std::string& host_port, const nlohmann::json& request,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                 const std::function<void(const nlohmann::json&)>& on_progress = {});

// Connect + {"cmd":"ping"} round trip in milliseconds (validate's reachability check).
Result<double> ping(const std::string& host_port, std::chrono::milliseconds timeout);

// The reply for a failed request.
nlohmann::json error_reply(const Status& s);

}  // namespace minihv::cluster
