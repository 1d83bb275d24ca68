#include "vmm/api.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/net.h"

namespace minihv {

namespace {

// A VM has few controllers (the CLI, its node, a console), all on this host: a local client may
// stay connected and silent for as long as it likes.
constexpr jsonl::Limits kVmControlLimits{
    .max_line_bytes = jsonl::kDefaultMaxRequestBytes, .read_timeout = std::nullopt, .max_connections = 16,
    .write_timeout = std::nullopt};
constexpr int kBacklog = 8;
constexpr mode_t kOwnerOnlyUmask = 0177;  // socket mode 0600: only the owner may steer the VM
jsonl::CallOptions silence(int timeout_ms) {
  return jsonl::CallOptions::with_silence(std::chrono::milliseconds(timeout_ms));
}

constexpr const char* kWhat = "the VM's control socket";

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::start(const std::string& path, Handler handler,
                                                    StreamCommands streams) {
  std::unique_ptr<ApiServer> s(new ApiServer(path));
  auto fd = s->bind_socket();
  if (!fd) return fd.status();
  auto server = jsonl::Server::serve(std::move(fd).value(), path, kVmControlLimits, std::move(handler),
                                     std::move(streams));
  if (!server) return server.status();
  s->server_ = std::move(server).value();
  return s;
}

// A socket file nobody answers on is stale (a VMM that died): it is taken over.
Result<UniqueFd> ApiServer::bind_socket() {
  auto addr = net::unix_address(path_);
  if (!addr) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno("socket");
  if (net::connect_unix(path_, kWhat))
    return Status::invalid("control socket " + path_ + " is in use by another running VM");
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::invalid("control socket path " + path_ + " exists and is not a socket");
    ::unlink(path_.c_str());
  }
  const mode_t old = ::umask(kOwnerOnlyUmask);
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  ::umask(old);
  if (rc < 0) return Status::invalid_from_errno("bind " + path_);  // the user's path: a missing or closed directory
  struct stat bound{};
  if (::lstat(path_.c_str(), &bound) == 0) bound_ = {bound.st_dev, bound.st_ino};
  if (::listen(fd.get(), kBacklog) < 0) return Status::from_errno("listen " + path_);
  return fd;
}

ApiServer::~ApiServer() {
  server_.reset();  // no client is served past here
  if (bound_) remove_own_socket_file();
}

// The file at path_ is removed only if it is still the socket this server bound: a refused start
// (another VM serves the path) or a path taken over since must not lose another VM's socket.
void ApiServer::remove_own_socket_file() const {
  struct stat now{};
  if (::lstat(path_.c_str(), &now) == 0 && now.st_dev == bound_->first && now.st_ino == bound_->second)
    ::unlink(path_.c_str());
}

Result<StreamConnection> api_open_stream(const std::string& path, const nlohmann::json& request, int timeout_ms) {
  auto fd = net::connect_unix(path, kWhat);
  if (!fd) return fd.status();
  StreamConnection c;
  auto reply = jsonl::call(fd->get(), path, request, silence(timeout_ms), {}, &c.early);
  if (!reply) return reply.status();
  if (!reply->value("ok", false)) return Status::error(reply->value("error", path + " refused the request"));
  c.fd = std::move(fd).value();
  c.reply = std::move(reply).value();
  return c;
}

Result<nlohmann::json> api_call(const std::string& path, const nlohmann::json& request, int timeout_ms,
                                const std::function<void(const nlohmann::json&)>& on_progress) {
  auto fd = net::connect_unix(path, kWhat);
  if (!fd) return fd.status();
  return jsonl::call(fd->get(), path, request, silence(timeout_ms), on_progress);
}

}  // namespace minihv
