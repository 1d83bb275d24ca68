// vmm/api.h — the per-VM control socket: a Unix stream socket speaking JSON lines.
//
// Owns: the socket file (mode 0600, removed on exit), accepting clients, framing requests and
// replies (one JSON object per line each way). What a command does is the handler's business.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

class ApiServer {
public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  // Binds `path`; refuses when another live process already serves it.
  static Result<std::unique_ptr<ApiServer>> start(const std::string& path, Handler handler);
  ~ApiServer();  // stops the thread and removes the socket file

  const std::string& path() const { return path_; }

private:
  ApiServer(std::string path, Handler handler) : path_(std::move(path)), handler_(std::move(handler)) {}
  void serve();
  void serve_client(int fd);

  std::string path_;
  Handler handler_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

// Client side, for `minihv` subcommands and tests: one request, one reply.
Result<nlohmann::json> api_call(const std::string& path, const nlohmann::json& request,
                                int timeout_ms = 10000);

}  // namespace minihv
