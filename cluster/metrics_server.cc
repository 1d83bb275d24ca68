#include "cluster/metrics_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "common/metrics.h"
#include "common/net.h"

namespace minihv::cluster {

namespace {

constexpr std::string_view kMetricsPath = "/metrics";
constexpr int64_t kMaxPollMs = 60'000;  // poll()'s int timeout: a wait without deadline polls in steps

// The end of a request head ("\r\n\r\n", or "\n\n" from a lenient client), or npos.
size_t head_end(const std::string& buf) {
  const size_t crlf = buf.find("\r\n\r\n");
  if (crlf != std::string::npos) return crlf + 4;
  const size_t lf = buf.find("\n\n");
  return lf == std::string::npos ? lf : lf + 2;
}

}  // namespace

HttpReply answer_http(std::string_view head, const std::function<std::string()>& text) {
  const std::string_view line = head.substr(0, head.find_first_of("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.compare(sp2 + 1, 7, "HTTP/1.") != 0) return {};
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (method != "GET" || target != kMetricsPath) return {};
  return {200, "OK", std::string(metrics::kContentType), text()};
}

std::string serialize(const HttpReply& r) {
  return "HTTP/1.1 " + std::to_string(r.status) + " " + r.reason + "\r\nContent-Type: " + r.content_type +
         "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\nConnection: close\r\n\r\n" + r.body;
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& host_port, TextFn text) {
  auto ep = net::parse_endpoint(host_port);
  if (!ep) return Status::invalid(ep.message());
  std::unique_ptr<MetricsServer> s(new MetricsServer(std::move(text)));
  auto fd = net::listen_on(*ep);
  if (!fd) return fd.status().context("listening on " + host_port);
  s->listen_fd_ = std::move(*fd);
  s->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!s->stop_fd_.valid()) return Status::from_errno("eventfd");
  s->thread_ = std::thread([raw = s.get()] { raw->serve(); });
  return s;
}

MetricsServer::~MetricsServer() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
}

uint16_t MetricsServer::port() const { return net::local_port(listen_fd_.get()); }

MetricsServer::Wait MetricsServer::wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Wait::kTimeout;
    pollfd fds[2] = {{fd, events, 0}, {stop_fd_.get(), POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), kMaxPollMs)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents) return Wait::kStop;
    if (fds[0].revents) return Wait::kReady;
  }
}

void MetricsServer::serve() {
  pthread_setname_np(pthread_self(), "metrics");
  for (;;) {
    const auto forever = std::chrono::steady_clock::time_point::max();
    if (wait_for(listen_fd_.get(), POLLIN, forever) == Wait::kStop) return;
    UniqueFd client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (client.valid()) serve_client(std::move(client));
  }
}

// One request, one reply, then close; a client that sends too much or too slowly gets nothing.
void MetricsServer::serve_client(UniqueFd client) {
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + kRequestTimeout;
  size_t end = std::string::npos;
  while (end == std::string::npos) {
    if (wait_for(client.get(), POLLIN, deadline) != Wait::kReady) return;
    char chunk[1024];
    const ssize_t n = ::recv(client.get(), chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;
    buf.append(chunk, static_cast<size_t>(n));
    end = head_end(buf);
    if ((end == std::string::npos ? buf.size() : end) > kMaxRequestBytes) return;
  }
  const std::string out = serialize(answer_http(std::string_view(buf).substr(0, end), text_));
  deadline = std::chrono::steady_clock::now() + kRequestTimeout;
  for (size_t off = 0; off < out.size();) {
    if (wait_for(client.get(), POLLOUT, deadline) != Wait::kReady) return;
    const ssize_t n = ::send(client.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace minihv::cluster
