#include "vmm/api.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"

namespace minihv {

namespace {

constexpr size_t kMaxRequest = 64 * 1024;  // a request line longer than this is refused
constexpr unsigned kMaxClients = 16;       // more at once are refused (a VM has few controllers)
constexpr unsigned kMaxTcpClients = 64;    // a cluster node: the CLI and every other node
constexpr int kTcpIdleMs = 60'000;         // a TCP client silent this long between requests is dropped

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Status::invalid("socket path '" + path + "' is empty or longer than " +
                           std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Status write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::from_errno("control socket write");
    off += static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::start(const std::string& path, Handler handler,
                                                    StreamCommands streams) {
  auto addr = unix_address(path);
  if (!addr) return addr.status();
  std::unique_ptr<ApiServer> s(new ApiServer(path, std::move(handler)));
  s->streams_ = std::move(streams);
  s->listen_fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s->listen_fd_.valid()) return Status::from_errno("socket");
  // A socket file nobody answers on is stale (a VMM that died): take it over.
  {
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0)
      return Status::invalid("control socket " + path + " is in use by another running VM");
    struct stat st{};
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return Status::invalid("control socket path " + path + " exists and is not a socket");
      unlink(path.c_str());
    }
  }
  mode_t old = umask(0177);  // mode 0600: only the owner may steer the VM
  int rc = bind(s->listen_fd_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  umask(old);
  if (rc < 0) return Status::invalid_from_errno("bind " + path);  // the user's path: a missing or closed directory
  struct stat bound{};
  if (lstat(path.c_str(), &bound) == 0) s->bound_ = {bound.st_dev, bound.st_ino};
  if (listen(s->listen_fd_.get(), 8) < 0) return Status::from_errno("listen " + path);
  MINIHV_TRY(s->start_thread());
  return s;
}

Result<std::unique_ptr<ApiServer>> ApiServer::adopt(UniqueFd listening, std::string name, Handler handler) {
  std::unique_ptr<ApiServer> s(new ApiServer(std::move(name), std::move(handler)));
  s->listen_fd_ = std::move(listening);
  s->unix_socket_ = false;
  MINIHV_TRY(s->start_thread());
  return s;
}

Status ApiServer::start_thread() {
  stop_fd_.reset(eventfd(0, EFD_CLOEXEC));
  if (!stop_fd_.valid()) return Status::from_errno("eventfd");
  thread_ = std::thread([this] { serve(); });
  return Status::ok();
}

ApiServer::~ApiServer() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }
  for (auto& c : clients_) c.thread.join();
  if (bound_) remove_own_socket_file();
}

// The file at path_ is removed only if it is still the socket this server bound: a refused start
// (another VM serves the path) or a path taken over since must not lose another VM's socket.
void ApiServer::remove_own_socket_file() const {
  struct stat now{};
  if (lstat(path_.c_str(), &now) == 0 && now.st_dev == bound_->first && now.st_ino == bound_->second)
    unlink(path_.c_str());
}

void ApiServer::serve() {
  pthread_setname_np(pthread_self(), "api");
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd client(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) continue;
    if (active_clients_.load() >= (unix_socket_ ? kMaxClients : kMaxTcpClients)) {
      (void)write_all(client.get(), nlohmann::json{{"ok", false}, {"error", "too many control clients"}}.dump() + "\n");
      continue;
    }
    active_clients_.fetch_add(1);
    std::lock_guard lock(clients_mu_);
    reap_finished_clients();
    auto done = std::make_shared<std::atomic<bool>>(false);
    clients_.push_back({std::thread([this, done, fd = std::move(client)]() mutable {
                          serve_client(std::move(fd));
                          active_clients_.fetch_sub(1);
                          done->store(true);
                        }),
                        done});
  }
}

// A long-lived server (a cluster node) sees many short clients: join the ones that have ended.
void ApiServer::reap_finished_clients() {
  std::erase_if(clients_, [](Client& c) {
    if (!c.done->load()) return false;
    c.thread.join();
    return true;
  });
}

// Serves one client, on its own thread, until it hangs up or the server stops.
void ApiServer::serve_client(UniqueFd client) {
  const int fd = client.get();
  Progress progress = [fd](const nlohmann::json& line) {
    nlohmann::json l = line;
    l["progress"] = true;
    (void)write_all(fd, l.dump() + "\n");
  };
  std::string buf;
  char chunk[4096];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    // Between requests: a local socket may wait forever; a network peer that went away without
    // closing (a dead node) must not hold a client slot for good.
    const int rc = poll(fds, 2, unix_socket_ ? -1 : kTcpIdleMs);
    if (rc == 0) return;
    if (rc < 0) continue;
    if (fds[1].revents) return;
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      auto req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const auto stream = req.is_object() && req.contains("cmd") && req["cmd"].is_string()
                              ? streams_.find(req["cmd"].get<std::string>())
                              : streams_.end();
      if (stream != streams_.end()) {
        auto opened = stream->second(req);
        if (!opened) {
          if (!write_all(fd, nlohmann::json{{"ok", false}, {"error", opened.message()}}.dump() + "\n")) return;
          continue;
        }
        if (!write_all(fd, nlohmann::json{{"ok", true}, {"stream", true}}.dump() + "\n")) return;
        (*opened)(fd, stop_fd_.get(), buf);  // the connection is the stream's until it ends
        return;
      }
      if (!write_all(fd, answer(req, progress).dump() + "\n")) return;
    }
    if (buf.size() > kMaxRequest) {
      (void)write_all(fd, nlohmann::json{{"ok", false}, {"error", "request line too long"}}.dump() + "\n");
      return;
    }
  }
}

nlohmann::json ApiServer::answer(const nlohmann::json& req, const Progress& progress) {
  if (req.is_discarded() || !req.is_object()) return {{"ok", false}, {"error", "request is not a JSON object"}};
  try {
    return handler_(req, progress);
  } catch (const std::exception& e) {  // a request the handler did not expect: refuse it, live on
    return {{"ok", false}, {"error", std::string("malformed request: ") + e.what()}};
  }
}

namespace {

Result<UniqueFd> connect_unix(const std::string& path) {
  auto addr = unix_address(path);
  if (!addr) return addr.status();
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0)
    return Status::from_errno("cannot reach the VM's control socket " + path);
  return fd;
}

// Reads lines until the reply (progress lines go to `on_progress`); what came after it stays in `buf`.
Result<nlohmann::json> read_reply(int fd, const std::string& path, int timeout_ms,
                                  const std::function<void(const nlohmann::json&)>& on_progress, std::string& buf) {
  char chunk[4096];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      auto reply = nlohmann::json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      if (reply.is_discarded()) return Status::error(path + " sent a reply that is not JSON");
      if (!reply.is_object() || !reply.value("progress", false)) return reply;
      if (on_progress) on_progress(reply);
    }
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc == 0) return Status::error("no reply from " + path + " within " + std::to_string(timeout_ms) + " ms");
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno("poll");
    }
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return Status::error(path + " closed the connection without replying");
    buf.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace

Result<StreamConnection> api_open_stream(const std::string& path, const nlohmann::json& request, int timeout_ms) {
  auto fd = connect_unix(path);
  if (!fd) return fd.status();
  MINIHV_TRY(write_all(fd->get(), request.dump() + "\n"));
  StreamConnection c;
  auto reply = read_reply(fd->get(), path, timeout_ms, {}, c.early);
  if (!reply) return reply.status();
  if (!reply->value("ok", false)) return Status::error(reply->value("error", path + " refused the request"));
  c.fd = std::move(fd).value();
  c.reply = std::move(reply).value();
  return c;
}

Result<nlohmann::json> api_call(const std::string& path, const nlohmann::json& request, int timeout_ms,
                                const std::function<void(const nlohmann::json&)>& on_progress) {
  auto fd = connect_unix(path);
  if (!fd) return fd.status();
  return api_call_fd(std::move(fd).value(), path, request, timeout_ms, on_progress);
}

Result<nlohmann::json> api_call_fd(UniqueFd fd, const std::string& path, const nlohmann::json& request,
                                   int timeout_ms, const std::function<void(const nlohmann::json&)>& on_progress) {
  MINIHV_TRY(write_all(fd.get(), request.dump() + "\n"));
  std::string buf;
  return read_reply(fd.get(), path, timeout_ms, on_progress, buf);
}

}  // namespace minihv
