#include "common/jsonl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "common/json_text.h"
#include "common/log.h"
#include "common/net.h"

namespace minihv::jsonl {

namespace {

constexpr size_t kReadChunk = 4096;

enum class Ready { kData, kTimeout, kStopped };

// Waits for `ch` to have bytes, at most `timeout` (nullopt: for ever), or for `stop_fd` (-1: none).
// A TLS session may already hold decrypted bytes while its fd has nothing more to read.
Ready wait_readable(const Channel& ch, std::optional<std::chrono::milliseconds> timeout, int stop_fd) {
  if (ch.has_pending()) return Ready::kData;
  const int fd = ch.fd();
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    const int rc = ::poll(fds, stop_fd >= 0 ? 2 : 1, timeout ? static_cast<int>(timeout->count()) : -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return Ready::kTimeout;
    if (rc > 0 && stop_fd >= 0 && fds[1].revents) return Ready::kStopped;
    return Ready::kData;  // readable, hung up, or an error the read will report
  }
}

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// What is left of the time until `deadline`, rounded up (0 once it has passed).
std::chrono::milliseconds left_until(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

// "192.0.2.1" / "2001:db8::1" (no port: a peer's connections are counted by its address).
std::string peer_address(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (a.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
  else if (a.ss_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
  else if (a.ss_family == AF_UNIX)
    return "local";
  return text;
}

// How long a refused plain-text client may take to read its error line before it is closed.
constexpr auto kRefusalLinger = std::chrono::milliseconds(500);

// One plain error line to a client that did not speak TLS, then the end. What it sent is read
// away first (briefly): closing with unread bytes resets the connection, which can overtake the line.
void refuse_plain(int fd, const std::string& message) {
  (void)write_line(fd, error_line(message));
  ::shutdown(fd, SHUT_WR);
  const auto until = std::chrono::steady_clock::now() + kRefusalLinger;
  char sink[kReadChunk];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left_until(until).count())) <= 0) return;
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return;
  }
}

}  // namespace

// --- lines --------------------------------------------------------------------------------------

bool LineReader::take_line(std::string& line) {
  const size_t nl = buf_.find('\n', scanned_);
  if (nl == std::string::npos) {
    scanned_ = buf_.size();
    return false;
  }
  line.assign(buf_, 0, nl);
  buf_.erase(0, nl + 1);
  scanned_ = 0;
  return true;
}

LineReader::Got LineReader::next(Channel& ch, std::string& line, std::optional<std::chrono::milliseconds> timeout,
                                 int stop_fd) {
  const auto deadline = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
  char chunk[kReadChunk];
  for (;;) {
    if (take_line(line)) return line.size() > max_line_ ? Got::kTooLong : Got::kLine;
    if (buf_.size() > max_line_) return Got::kTooLong;  // no '\n' within the limit: never grow past it
    switch (wait_readable(ch, timeout ? std::optional(left_until(deadline)) : std::nullopt, stop_fd)) {
      case Ready::kTimeout: return Got::kTimeout;
      case Ready::kStopped: return Got::kStopped;
      case Ready::kData: break;
    }
    // (A TLS record that has begun to arrive is waited for whole, but not past the line's deadline.)
    auto n = ch.read_some(chunk, sizeof chunk, timeout ? std::optional(deadline) : std::nullopt);
    if (!n && timeout && std::chrono::steady_clock::now() >= deadline) return Got::kTimeout;
    if (!n || *n == 0) return Got::kClosed;
    buf_.append(chunk, *n);
  }
}

LineReader::Got LineReader::next(int fd, std::string& line, std::optional<std::chrono::milliseconds> timeout,
                                 int stop_fd) {
  PlainChannel ch(fd);
  return next(ch, line, timeout, stop_fd);
}

Status write_line(Channel& ch, const Json& j) { return ch.write_all(json_text(j) + "\n"); }

Status write_line(int fd, const Json& j) { return net::send_all(fd, json_text(j) + "\n"); }

Json error_line(const std::string& message) { return {{"ok", false}, {"error", message}}; }

// --- server -------------------------------------------------------------------------------------

Server::Server(std::string name, Limits limits, Handler handler, StreamCommands streams)
    : name_(std::move(name)), limits_(limits), handler_(std::move(handler)), streams_(std::move(streams)) {}

Result<std::unique_ptr<Server>> Server::serve(UniqueFd listening, std::string name, Limits limits, Handler handler,
                                              StreamCommands streams, std::optional<tls::Psk> psk) {
  std::unique_ptr<Server> s(new Server(std::move(name), limits, std::move(handler), std::move(streams)));
  s->psk_ = std::move(psk);
  s->listen_fd_ = std::move(listening);
  s->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!s->stop_fd_.valid()) return Status::from_errno("eventfd");
  s->accept_thread_ = std::thread([raw = s.get()] { raw->accept_loop(); });
  return s;
}

Server::~Server() {
  if (accept_thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);  // stays readable: every client sees it too
    accept_thread_.join();
  }
  std::vector<Client> clients;
  {
    std::lock_guard lock(clients_mu_);
    clients.swap(clients_);
  }
  // Idle clients and streams end at the stop; a handler finishing its reply (a migration's last
  // line, written as the VM it moved ends) gets kReplyGrace to write it.
  const auto deadline = std::chrono::steady_clock::now() + kReplyGrace;
  for (auto& c : clients)
    while (!c.done->load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  {
    std::lock_guard lock(clients_mu_);  // (a client's fd is closed under it: never shut down a reused number)
    // A client that reads nothing must not hold a Handler's write (or a Stream's) for ever.
    for (auto& c : clients)
      if (c.fd->valid()) ::shutdown(c.fd->get(), SHUT_RDWR);
  }
  for (auto& c : clients) c.thread.join();
}

void Server::accept_loop() {
  pthread_setname_np(pthread_self(), "api");  // its client threads inherit the name
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    UniqueFd client(::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC));
    if (client.valid()) admit(std::move(client), peer_address(addr));
  }
}

// Gives `client` its own thread, or refuses it when the server already has its limit, in all or
// for its address.
void Server::admit(UniqueFd client, const std::string& peer) {
  if (active_clients_.load() >= limits_.max_connections) {
    (void)write_line(client.get(), error_line("too many control clients"));
    return;
  }
  std::lock_guard lock(clients_mu_);
  if (limits_.max_per_peer && per_peer_[peer] >= limits_.max_per_peer) {
    (void)write_line(client.get(), error_line("too many connections from " + peer + " (the limit is " +
                                              std::to_string(limits_.max_per_peer) + ")"));
    return;
  }
  if (limits_.write_timeout) net::set_send_timeout(client.get(), *limits_.write_timeout);
  active_clients_.fetch_add(1);
  per_peer_[peer]++;
  reap_finished_clients();
  auto done = std::make_shared<std::atomic<bool>>(false);
  auto fd = std::make_shared<UniqueFd>(std::move(client));
  clients_.push_back({std::thread([this, done, fd, peer] {
                        serve_client(fd->get(), peer);
                        {
                          std::lock_guard closing(clients_mu_);
                          fd->reset();  // the peer sees the end now, not when this thread is reaped
                          if (--per_peer_[peer] == 0) per_peer_.erase(peer);
                        }
                        active_clients_.fetch_sub(1);
                        done->store(true);
                      }),
                      done, fd});
}

// A long-lived server (a cluster node) sees many short clients: join the ones that have ended.
void Server::reap_finished_clients() {
  std::erase_if(clients_, [](Client& c) {
    if (!c.done->load()) return false;
    c.thread.join();
    return true;
  });
}

// Serves one client, on its own thread, until it hangs up, breaks a limit or the server stops.
void Server::serve_client(int fd, const std::string& peer) {
  auto ch = open_channel(fd, peer);
  if (ch) serve_lines(*ch);
}

// The client's channel: the socket itself, or (with a key) a TLS session once the handshake is
// done; null when the handshake failed (the client has had its answer, the log says why).
std::unique_ptr<Channel> Server::open_channel(int fd, const std::string& peer) {
  if (!psk_) return std::make_unique<PlainChannel>(fd);
  // The handshake's last flight and the first reply are small writes right behind each other:
  // with Nagle each would wait for the peer's delayed ACK (40 ms a call, measured).
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  tls::Failure why = tls::Failure::kNone;
  auto session = tls::handshake(fd, tls::Role::kServer, *psk_,
                                std::chrono::steady_clock::now() + kHandshakeDeadline, &why);
  if (session) return std::make_unique<TlsChannel>(std::move(*session), limits_.write_timeout);
  log_refusal(peer, session.message());
  if (why == tls::Failure::kNotTls) refuse_plain(fd, name_ + " speaks TLS only (a minihv node: use `minihv cluster` "
                                                         "with this cluster's key)");
  return nullptr;
}

void Server::log_refusal(const std::string& peer, const std::string& why) {
  std::lock_guard lock(log_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - log_second_ >= std::chrono::seconds(1)) {
    log_second_ = now;
    logged_this_second_ = 0;
  }
  if (logged_this_second_ >= kRefusalLogsPerSecond) {
    ++not_logged_;
    return;
  }
  ++logged_this_second_;
  const std::string more = not_logged_ ? " (and " + std::to_string(not_logged_) + " refusals not logged before it)" : "";
  not_logged_ = 0;
  LOG_WARN("%s: refused a connection from %s: %s%s", name_.c_str(), peer.c_str(), why.c_str(), more.c_str());
}

void Server::serve_lines(Channel& ch) {
  std::mutex write_mu;  // a Handler may send progress from another thread; lines must not interleave
  const Progress progress = [&ch, &write_mu](const Json& line) {
    Json l = line;
    l["progress"] = true;
    std::lock_guard lock(write_mu);
    (void)write_line(ch, l);
  };
  LineReader reader(limits_.max_line_bytes);
  for (std::string line;;) {
    switch (reader.next(ch, line, limits_.read_timeout, stop_fd_.get())) {
      case LineReader::Got::kLine: break;
      case LineReader::Got::kTooLong:
        (void)write_line(ch, error_line("request line too long (the limit is " +
                                        std::to_string(limits_.max_line_bytes) + " bytes)"));
        return;
      case LineReader::Got::kTimeout:
        if (!reader.rest().empty())
          (void)write_line(ch, error_line("no end of line within " + ms_text(*limits_.read_timeout)));
        return;
      case LineReader::Got::kClosed:
      case LineReader::Got::kStopped: return;
    }
    if (!answer_line(ch, line, reader, progress)) return;
  }
}

// Answers one request line; false when the connection is over (a stream ended, or a write failed).
bool Server::answer_line(Channel& ch, const std::string& line, const LineReader& reader, const Progress& progress) {
  const Json req = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  const auto stream = req.is_object() && req.contains("cmd") && req["cmd"].is_string()
                          ? streams_.find(req["cmd"].get<std::string>())
                          : streams_.end();
  if (stream == streams_.end()) {
    const Json reply = answer(req, progress);
    return write_line(ch, reply).is_ok();
  }
  if (ch.is_tls()) return write_line(ch, error_line("stream commands are not served over TLS")).is_ok();
  auto opened = stream->second(req);
  if (!opened) return write_line(ch, error_line(opened.message())).is_ok();
  if (!write_line(ch, {{"ok", true}, {"stream", true}})) return false;
  (*opened)(ch.fd(), stop_fd_.get(), reader.rest());  // the connection is the stream's until it ends
  return false;
}

Json Server::answer(const Json& req, const Progress& progress) {
  if (req.is_discarded() || !req.is_object()) return error_line("request is not a JSON object");
  try {
    return handler_(req, progress);
  } catch (const std::exception& e) {  // a request the handler did not expect: refuse it, live on
    return error_line(std::string("malformed request: ") + e.what());
  }
}

// --- client -------------------------------------------------------------------------------------

namespace {

// How long the next line may take: the silence allowed, cut short by the deadline.
std::chrono::milliseconds next_wait(const CallOptions& o) {
  if (!o.deadline) return o.silence;
  return std::min(left_until(*o.deadline), o.silence);
}

}  // namespace

Result<Json> call(Channel& ch, const std::string& peer, const Json& request, const CallOptions& o,
                  const Progress& on_progress, std::string* after) {
  MINIHV_TRY(write_line(ch, request));
  LineReader reader(o.max_line_bytes);
  for (std::string line;;) {
    const auto wait = next_wait(o);
    switch (reader.next(ch, line, wait)) {
      case LineReader::Got::kLine: break;
      case LineReader::Got::kTooLong:
        return Status::error(peer + " sent a reply line over " + std::to_string(o.max_line_bytes) + " bytes");
      case LineReader::Got::kTimeout: return Status::error("no reply from " + peer + " within " + ms_text(wait));
      case LineReader::Got::kClosed:
      case LineReader::Got::kStopped: return Status::error(peer + " closed the connection without replying");
    }
    auto reply = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (reply.is_discarded()) return Status::error(peer + " sent a reply that is not JSON");
    const auto p = reply.is_object() ? reply.find("progress") : reply.end();
    if (p == reply.end() || *p != true) {  // ({"progress": 1} is a reply, a malformed one)
      if (after) *after = reader.rest();
      return reply;
    }
    if (on_progress) on_progress(reply);
  }
}

Result<Json> call(int fd, const std::string& peer, const Json& request, const CallOptions& o,
                  const Progress& on_progress, std::string* after) {
  PlainChannel ch(fd);
  return call(ch, peer, request, o, on_progress, after);
}

}  // namespace minihv::jsonl
