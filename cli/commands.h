// cli/commands.h — the `minihv` subcommands. Each registers its options on the CLI11 app and
// runs when chosen; argument parsing and output live here, everything else in the modules.
#pragma once

#include <CLI/CLI.hpp>

#include <signal.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "common/keys.h"
#include "common/net.h"
#include "common/tls.h"
#include "vmm/api.h"
#include "vmm/vm.h"

namespace minihv::cli {

struct Command {
  CLI::App* app;              // the subcommand, to know whether it was chosen
  std::function<int()> run;   // returns the process exit status
};

Command add_run_command(CLI::App& app);
Command add_ps_command(CLI::App& app);
Command add_console_command(CLI::App& app);
std::vector<Command> add_vm_commands(CLI::App& app);
std::vector<Command> add_cpuid_commands(CLI::App& app);
std::vector<Command> add_volume_commands(CLI::App& app);
Command add_migrate_command(CLI::App& app);
std::vector<Command> add_receiver_commands(CLI::App& app);

// Where the cluster key is when --key is not given: $MINIHV_KEY, else this file.
constexpr const char* kKeyEnv = "MINIHV_KEY";
constexpr const char* kDefaultKeyFile = "/etc/minihv/cluster.key";
std::string key_path(const std::string& given);
// The cluster key for a node, the CLI or a receiver; a missing or bad file is the operator's to
// fix (exit 2).
Result<keys::Secret> load_cluster_key(const std::string& given);
// For the daemons (node, receiver): the path of this binary (/proc/self/exe), and SIGINT, SIGTERM
// and SIGHUP blocked in this thread and every thread it starts (one sigwait()s for them; SIGPIPE
// is ignored). Returns the set.
Result<std::string> self_exe();
sigset_t block_stop_signals();
std::vector<Command> add_cluster_commands(CLI::App& app);
// help and completion walk `app`'s whole tree when they run: add them with the others, in any order.
std::vector<Command> add_help_commands(CLI::App& app);

// The VM side of `minihv migrate` (control-socket requests "migrate" and "migrate-resolve"): one
// migration at a time, and a switchover left in doubt (migrate/in_doubt.h) until it is settled.
class MigrationControl {
public:
  nlohmann::json migrate(Vm& vm, const nlohmann::json& req, const ApiServer::Progress& progress);
  // action "ask" (again), "resume" (here: the operator knows the destination does not run it) or
  // "end" (here: the operator knows it does).
  nlohmann::json resolve(Vm& vm, const nlohmann::json& req);
  // Held by pause/resume so that no migration starts meanwhile (and refused during one).
  std::atomic<bool>& busy() { return busy_; }
  // Why the VM must stay paused ("" unless a switchover is in doubt).
  std::string in_doubt_reason() const;
  nlohmann::json status() const;  // {"in_doubt": false} or what is in doubt

private:
  struct InDoubt {
    std::vector<net::Endpoint> targets;
    uint64_t session = 0;
    std::string why;
    std::optional<tls::Psk> psk;  // the migration's channel key: the witness is asked with it
  };
  std::atomic<bool> busy_{false};
  mutable std::mutex mu_;
  std::optional<InDoubt> in_doubt_;
};

// Exit statuses shared by every subcommand (`minihv run` adds the guest's: see docs/vmm.md).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInDoubt = 3;  // `migrate`: the switchover is in doubt, the VM paused (--resolve)

}  // namespace minihv::cli
