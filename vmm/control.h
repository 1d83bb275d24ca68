// vmm/control.h — what a running VM's control-socket requests do.
//
// Owns: the built-in commands (status, stats, pause, resume, stop), the order a request is tried
// in, and the reply to a command nobody answers. The socket itself is api.h's.
// Must not know: migration. Its commands (migrate, migrate-resolve), its say over pause/resume and
// its part of "status" plug in through a ControlPlugin that the `minihv run` command assembles.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "vmm/api.h"

namespace minihv {

class Vm;

// The VM as its control socket sees it; a seam so that the dispatch is tested without KVM.
struct ControlledVm {
  std::function<nlohmann::json()> status;
  std::function<nlohmann::json()> stats;
  std::function<Status()> pause;
  std::function<Status()> resume;
  std::function<void()> stop;

  static ControlledVm of(Vm& vm);
};

// Another module's part of the control socket. Every member may be left empty.
struct ControlPlugin {
  using Command = std::function<nlohmann::json(const nlohmann::json& request, const ApiServer::Progress& progress)>;
  using RunStateChange = std::function<nlohmann::json()>;

  // Answers every request in the VM's place while it returns a reply (a VM still arriving).
  std::function<std::optional<nlohmann::json>(const std::string& cmd)> intercept;
  // Commands by "cmd": tried before the built-ins, named after them in an unknown command's reply.
  std::vector<std::pair<std::string, Command>> commands;
  // "status" carries status() under status_key.
  std::string status_key;
  std::function<nlohmann::json()> status;
  // pause and resume run through it: it refuses them (a reply) or calls `change` and returns its reply.
  std::function<nlohmann::json(const std::string& cmd, const RunStateChange& change)> run_state;
};

// {"ok": true} or {"ok": false, "error": ...}: the reply shape of every command.
nlohmann::json control_reply(Status s);
nlohmann::json control_refusal(const std::string& why);

class VmControl {
public:
  // `stream_commands`: the names of the socket's stream commands (api.h: "console"), which the
  // server answers itself; listed in an unknown command's reply.
  VmControl(ControlledVm vm, std::vector<std::string> stream_commands, ControlPlugin plugin = {});

  // One request (a JSON object; a "cmd" that is not a string throws, which the server answers as
  // a malformed request).
  nlohmann::json handle(const nlohmann::json& request, const ApiServer::Progress& progress) const;
  // handle() as the server's handler; the VmControl must outlive the server.
  ApiServer::Handler handler() const;

private:
  nlohmann::json builtin(const std::string& cmd) const;
  nlohmann::json change_run_state(const std::string& cmd) const;
  std::string unknown(const std::string& cmd) const;

  ControlledVm vm_;
  std::vector<std::string> stream_commands_;
  ControlPlugin plugin_;
};

}  // namespace minihv
