// cluster/metrics_server.h — `minihv node --metrics HOST:PORT`: Prometheus scrapes `GET /metrics`
// over plain HTTP/1.1 on TCP.
//
// Owns: the listening socket and one thread (started by start(), joined by the destructor) that
// serves one connection at a time: one request, one reply, then the connection closes. Every
// network input is limited (DESIGN §9): a request head over kMaxRequestBytes, or not complete
// within kRequestTimeout, closes the connection unanswered. What the text says is the caller's
// (`text`, called on the server's thread for each scrape).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "common/fd.h"
#include "common/status.h"

namespace minihv::cluster {

inline constexpr size_t kMaxRequestBytes = 8 * 1024;
inline constexpr std::chrono::milliseconds kRequestTimeout{2000};  // to read the head, and again to write

struct HttpReply {
  int status = 404;
  std::string reason = "Not Found";
  std::string content_type = "text/plain";
  std::string body = "not found: minihv serves GET /metrics\n";
};

// The reply to one request head (request line and headers): 200 with the metrics for
// `GET /metrics` (a query string is ignored), 404 for anything else. Pure, apart from `text`.
HttpReply answer_http(std::string_view head, const std::function<std::string()>& text);
// Status line, Content-Type, Content-Length, Connection: close, then the body.
std::string serialize(const HttpReply& reply);

class MetricsServer {
public:
  using TextFn = std::function<std::string()>;
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& host_port, TextFn text);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const;  // the bound port (useful with HOST:0)

private:
  explicit MetricsServer(TextFn text) : text_(std::move(text)) {}
  void serve();
  void serve_client(UniqueFd client);
  enum class Wait { kReady, kTimeout, kStop };
  Wait wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline);

  TextFn text_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace minihv::cluster
