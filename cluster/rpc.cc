#include "cluster/rpc.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

#include "common/channel.h"
#include "common/net.h"

namespace minihv::cluster {

namespace {

// What a client says when the node's side of the handshake failed.
Status handshake_refused(const std::string& host_port, tls::Failure why, const Status& s) {
  const std::string node = "node " + host_port;
  switch (why) {
    case tls::Failure::kWrongKey:
      return Status::error(node + " refused the handshake: it does not hold this cluster's key (or this CLI "
                                  "holds another: check --key / $MINIHV_KEY)");
    case tls::Failure::kNotTls:
      return Status::error(node + " does not speak TLS (an older minihv, another service, or it refused this "
                                  "connection: too many from this address)");
    case tls::Failure::kTimeout: return Status::error(node + " did not finish the TLS handshake in time");
    default: return s.context(node + ": TLS handshake");
  }
}

}  // namespace

Result<RpcKey> rpc_key(const keys::Secret& cluster_key, std::string_view label) {
  auto derived = keys::derive(cluster_key, label);
  if (!derived) return derived.status();
  RpcKey key;
  key.key = *derived;
  return key;
}

Result<RpcKey> node_rpc_key(const keys::Secret& cluster_key) { return rpc_key(cluster_key, keys::kNodeRpcLabel); }

Result<std::unique_ptr<jsonl::Server>> serve_tcp(const std::string& host_port, const RpcKey& key,
                                                 jsonl::Handler handler) {
  auto ep = net::parse_endpoint(host_port);
  if (!ep) return ep.status();
  auto fd = net::listen_on(*ep);
  if (!fd) return fd.status().context("listening on " + host_port);
  return jsonl::Server::serve(std::move(fd).value(), host_port, kNodeRpcLimits, std::move(handler), {}, key);
}

Result<nlohmann::json> node_call(const RpcKey& key, const std::string& host_port, const nlohmann::json& request,
                                 std::chrono::milliseconds timeout,
                                 const std::function<void(const nlohmann::json&)>& on_progress) {
  auto ep = net::parse_endpoint(host_port);
  if (!ep) return ep.status();
  const auto connect_wait = std::min<std::chrono::milliseconds>(timeout, timings::kRpcConnect);
  auto fd = net::connect_to(*ep, connect_wait);
  if (!fd) return fd.status().context("node " + host_port);
  const int one = 1;  // the Finished flight and the request go out at once, not after a delayed ACK
  ::setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  tls::Failure why = tls::Failure::kNone;
  auto session = tls::handshake(fd->get(), tls::Role::kClient, key, std::chrono::steady_clock::now() + connect_wait,
                                &why);
  if (!session) return handshake_refused(host_port, why, session.status());
  TlsChannel ch(std::move(*session), timings::kRpcWrite);
  const auto options = jsonl::CallOptions::with_silence(timeout);
  auto reply = jsonl::call(ch, "node " + host_port, request, options, on_progress);
  if (!reply) return reply.status();
  if (!reply->is_object()) return Status::error("node " + host_port + " sent a reply that is not an object");
  if (reply->value("ok", nlohmann::json()) != true) {  // (a malformed reply is a failure, never an exception)
    const nlohmann::json e = reply->value("error", nlohmann::json());
    const std::string why_text = e.is_string() ? e.get<std::string>() : "failed without saying why";
    return reply->value("invalid", nlohmann::json()) == true ? Status::invalid(why_text) : Status::error(why_text);
  }
  return reply;
}

Result<double> ping(const RpcKey& key, const std::string& host_port, std::chrono::milliseconds timeout) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = node_call(key, host_port, {{"cmd", "ping"}}, timeout);
  if (!r) return r.status();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

nlohmann::json error_reply(const Status& s) {
  nlohmann::json r = {{"ok", false}, {"error", s.message()}};
  if (s.is_invalid_input()) r["invalid"] = true;
  return r;
}

}  // namespace minihv::cluster
