// vmm/api.h — the per-VM control socket: a Unix stream socket speaking JSON lines.
//
// Owns: the socket file (mode 0600, removed on exit), accepting clients, framing requests and
// replies (one JSON object per line each way), and handing a connection over to a stream command
// (the console) after its reply. What a command does is the handler's business.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

class ApiServer {
public:
  // Sends an intermediate line to the client (progress of a long request such as a migration).
  using Progress = std::function<void(const nlohmann::json&)>;
  // Runs on the client's own thread: a long request never blocks another client's `status`.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request, const Progress& progress)>;
  // A stream command turns its connection into raw bytes both ways after the reply line
  // {"ok":true,"stream":true}. The Stream owns the connection on the client's thread until it
  // returns, which it must do soon after `stop_fd` becomes readable (the server stops); `early`
  // holds what the client sent right behind its request line. The connection closes after it.
  using Stream = std::function<void(int fd, int stop_fd, const std::string& early)>;
  using StreamOpener = std::function<Result<Stream>(const nlohmann::json& request)>;
  using StreamCommands = std::map<std::string, StreamOpener>;  // by "cmd"

  // Binds `path`; refuses when another live process already serves it.
  static Result<std::unique_ptr<ApiServer>> start(const std::string& path, Handler handler,
                                                  StreamCommands streams = {});
  // Serves on a socket that is already listening (e.g. TCP: a cluster node's control server);
  // `name` is for messages only.
  static Result<std::unique_ptr<ApiServer>> adopt(UniqueFd listening, std::string name, Handler handler);
  ~ApiServer();  // stops the thread and removes the socket file it bound (never another's)

  const std::string& path() const { return path_; }

private:
  ApiServer(std::string path, Handler handler) : path_(std::move(path)), handler_(std::move(handler)) {}
  Status start_thread();
  void serve();
  void reap_finished_clients();
  void serve_client(UniqueFd fd);
  void remove_own_socket_file() const;
  nlohmann::json answer(const nlohmann::json& request, const Progress& progress);

  std::string path_;
  Handler handler_;
  StreamCommands streams_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
  std::mutex clients_mu_;
  struct Client {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Client> clients_;
  bool unix_socket_ = true;  // false for an adopted (TCP) socket: the client limits and idle timeout differ
  std::optional<std::pair<dev_t, ino_t>> bound_;  // the socket file this server created
  std::atomic<unsigned> active_clients_{0};
};

// Client side, for `minihv` subcommands and tests: one request, one reply. Intermediate lines
// (objects with "progress": true) go to `on_progress` when given, and are skipped otherwise.
Result<nlohmann::json> api_call(const std::string& path, const nlohmann::json& request,
                                int timeout_ms = 10000,
                                const std::function<void(const nlohmann::json&)>& on_progress = {});
// A stream command's client side: sends `request` and reads the reply. On {"ok":true} the
// connection now carries the stream, and `early` holds stream bytes that came right behind the
// reply; any other reply is an error with the VM's message.
struct StreamConnection {
  UniqueFd fd;
  nlohmann::json reply;
  std::string early;
};
Result<StreamConnection> api_open_stream(const std::string& path, const nlohmann::json& request,
                                         int timeout_ms = 10000);
// The same exchange on a connected socket; `peer` names it in messages.
Result<nlohmann::json> api_call_fd(UniqueFd fd, const std::string& peer, const nlohmann::json& request,
                                   int timeout_ms, const std::function<void(const nlohmann::json&)>& on_progress);

}  // namespace minihv
