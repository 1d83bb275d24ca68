#include "cluster/rpc.h"

#include <algorithm>

#include "common/net.h"

namespace minihv::cluster {

Result<std::unique_ptr<jsonl::Server>> serve_tcp(const std::string& host_port, jsonl::Handler handler) {
  auto ep = net::parse_endpoint(host_port);
  if (!ep) return ep.status();
  auto fd = net::listen_on(*ep);
  if (!fd) return fd.status().context("listening on " + host_port);
  return jsonl::Server::serve(std::move(fd).value(), host_port, kNodeRpcLimits, std::move(handler));
}

Result<nlohmann::json> node_call(const std::string& host_port, const nlohmann::json& request,
                                 std::chrono::milliseconds timeout,
                                 const std::function<void(const nlohmann::json&)>& on_progress) {
  auto ep = net::parse_endpoint(host_port);
  if (!ep) return ep.status();
  auto fd = net::connect_to(*ep, std::min<std::chrono::milliseconds>(timeout, timings::kRpcConnect));
  if (!fd) return fd.status().context("node " + host_port);
  const auto options = jsonl::CallOptions::with_silence(timeout);
  auto reply = jsonl::call(fd->get(), "node " + host_port, request, options, on_progress);
  if (!reply) return reply.status();
  if (!reply->is_object()) return Status::error("node " + host_port + " sent a reply that is not an object");
  if (reply->value("ok", nlohmann::json()) != true) {  // (a malformed reply is a failure, never an exception)
    const nlohmann::json e = reply->value("error", nlohmann::json());
    const std::string why = e.is_string() ? e.get<std::string>() : "failed without saying why";
    return reply->value("invalid", nlohmann::json()) == true ? Status::invalid(why) : Status::error(why);
  }
  return reply;
}

Result<double> ping(const std::string& host_port, std::chrono::milliseconds timeout) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = node_call(host_port, {{"cmd", "ping"}}, timeout);
  if (!r) return r.status();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

nlohmann::json error_reply(const Status& s) {
  nlohmann::json r = {{"ok", false}, {"error", s.message()}};
  if (s.is_invalid_input()) r["invalid"] = true;
  return r;
}

}  // namespace minihv::cluster
