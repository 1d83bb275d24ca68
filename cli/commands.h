// cli/commands.h — the `minihv` subcommands. Each registers its options on the CLI11 app and
// runs when chosen; argument parsing and output live here, everything else in the modules.
#pragma once

#include <CLI/CLI.hpp>

#include <atomic>
#include <functional>
#include <vector>

#include "vmm/api.h"
#include "vmm/vm.h"

namespace minihv::cli {

struct Command {
  CLI::App* app;              // the subcommand, to know whether it was chosen
  std::function<int()> run;   // returns the process exit status
};

Command add_run_command(CLI::App& app);
std::vector<Command> add_vm_commands(CLI::App& app);
std::vector<Command> add_cpuid_commands(CLI::App& app);
std::vector<Command> add_volume_commands(CLI::App& app);
Command add_migrate_command(CLI::App& app);
std::vector<Command> add_cluster_commands(CLI::App& app);

// The VM side of `minihv migrate` (a control-socket request); `busy` allows one at a time.
nlohmann::json handle_migrate_request(Vm& vm, std::atomic<bool>& busy, const nlohmann::json& req,
                                      const ApiServer::Progress& progress);

// Exit statuses shared by every subcommand (`minihv run` adds the guest's: see docs/vmm.md).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

}  // namespace minihv::cli
