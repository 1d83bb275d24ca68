// cli/run_control.h — what `minihv run` plugs into its VM's control socket (vmm/control.h owns the
// dispatch and the built-in commands): the migration's commands, and the wait of an `--incoming`
// VM, which the socket already answers (status, stop, console). vmm/ knows nothing of migration,
// so the two meet here.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/fd.h"
#include "common/keys.h"
#include "common/status.h"
#include "common/tls.h"
#include "vmm/api.h"
#include "vmm/control.h"
#include "vmm/vm.h"

namespace minihv::cli {

// The environment variable that names the key file when --tls-psk is not given.
inline constexpr const char* kTlsPskEnv = "MINIHV_TLS_PSK";

// The migration channel's key for `run --incoming` / `migrate`: from --tls-psk FILE (`file`), else
// the file $MINIHV_TLS_PSK names; none with `insecure` (a warning on stderr says what that
// exposes). Bad input (no key and no --insecure, a bad key file) is an invalid-input Status.
// Returns the key file's key; migrate::migration_psk derives the channel key from it.
Result<std::optional<keys::Secret>> migration_file_key(const std::string& file, bool insecure);
// The same for the VM's side of the control socket's migrate command: its "psk" (a key file's 64
// hex digits) or "insecure": true, else the file $MINIHV_TLS_PSK of this process names (a cluster
// node's VM inherits it). The channel key, derived.
Result<std::optional<tls::Psk>> migration_psk_of(const nlohmann::json& req);

// An --incoming VM before it runs: listening (for the source to connect), then receiving. A stop
// ends the wait while it listens; once a source is in, the migration finishes or fails first.
class IncomingWait {
public:
  enum class Phase { kListening, kReceiving, kArrived };

  // `address`: --incoming as given (the real port once listening reports it).
  static Result<std::unique_ptr<IncomingWait>> create(std::string address);

  int cancel_fd() const { return cancel_fd_.get(); }  // for migrate::DestinationOptions
  void on_progress(const nlohmann::json& event);       // migrate_in's events
  void arrived();
  Phase phase() const;
  // Ends the wait (true) while listening; false (nothing done) once a source is in or it arrived.
  bool cancel();
  bool cancelled() const;
  nlohmann::json status() const;  // {"phase": "listening"|"receiving", "address": ..., "peer": ...}

private:
  explicit IncomingWait(std::string address, UniqueFd cancel_fd)
      : address_(std::move(address)), cancel_fd_(std::move(cancel_fd)) {}
  mutable std::mutex mu_;
  Phase phase_ = Phase::kListening;
  std::string address_;
  std::string peer_;
  bool cancelled_ = false;
  UniqueFd cancel_fd_;  // eventfd: written once by cancel()
};

// The migration's part of the control socket (vmm/control.h): migrate, migrate-resolve, its say
// over pause/resume, "migration" in status, and, for an --incoming VM (`incoming`; nullptr for a VM
// that booted here), the answers while it has not arrived.
ControlPlugin migration_plugin(Vm& vm, MigrationControl& migration, IncomingWait* incoming);

// The stream commands: "console" attaches the connection to the guest's serial port both ways.
ApiServer::StreamCommands stream_commands(Vm& vm);
std::vector<std::string> command_names(const ApiServer::StreamCommands& streams);

}  // namespace minihv::cli
