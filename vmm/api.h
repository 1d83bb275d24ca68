// vmm/api.h — the per-VM control socket: a Unix stream socket speaking JSON lines (common/jsonl.h).
//
// Owns: the socket file (mode 0600, removed on exit; a stale one taken over, a live one refused)
// and the limits a VM's controllers live under. Framing, threads and streams are jsonl::Server's;
// what a command does is the handler's business.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/jsonl.h"
#include "common/status.h"

namespace minihv {

class ApiServer {
public:
  // Sends an intermediate line to the client (progress of a long request such as a migration).
  using Progress = jsonl::Progress;
  // Runs on the client's own thread: a long request never blocks another client's `status`.
  using Handler = jsonl::Handler;
  // A stream command turns its connection into raw bytes both ways after the reply line
  // {"ok":true,"stream":true} (jsonl::Stream).
  using Stream = jsonl::Stream;
  using StreamOpener = jsonl::StreamOpener;
  using StreamCommands = jsonl::StreamCommands;  // by "cmd"

  // Binds `path`; refuses when another live process already serves it.
  static Result<std::unique_ptr<ApiServer>> start(const std::string& path, Handler handler,
                                                  StreamCommands streams = {});
  ~ApiServer();  // stops the server and removes the socket file it bound (never another's)
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  const std::string& path() const { return path_; }

private:
  explicit ApiServer(std::string path) : path_(std::move(path)) {}
  Result<UniqueFd> bind_socket();
  void remove_own_socket_file() const;

  std::string path_;
  std::optional<std::pair<dev_t, ino_t>> bound_;  // the socket file this server created
  std::unique_ptr<jsonl::Server> server_;
};

// Client side, for `minihv` subcommands and tests: one request, one reply. Intermediate lines
// (objects with "progress": true) go to `on_progress` when given, and are skipped otherwise.
// `timeout_ms` is the longest silence: a progress line restarts it.
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

}  // namespace minihv
