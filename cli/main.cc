// minihv — a small KVM hypervisor that boots, live-migrates and fails over guests.
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using namespace minihv;
  CLI::App app{"minihv: a small KVM hypervisor with live migration and failover", "minihv"};
  app.require_subcommand(1);
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "More diagnostics on stderr (-vv for debug)");

  std::vector<cli::Command> commands{cli::add_run_command(app), cli::add_ps_command(app),
                                     cli::add_console_command(app)};
  for (auto& c : cli::add_vm_commands(app)) commands.push_back(std::move(c));
  for (auto& c : cli::add_cpuid_commands(app)) commands.push_back(std::move(c));
  for (auto& c : cli::add_volume_commands(app)) commands.push_back(std::move(c));
  commands.push_back(cli::add_migrate_command(app));
  for (auto& c : cli::add_cluster_commands(app)) commands.push_back(std::move(c));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "minihv: error: %s\nrun 'minihv --help' or 'minihv <command> --help' for usage\n",
                 e.what());
    return cli::kExitUsage;
  }
  set_log_level(verbosity >= 2 ? LogLevel::kDebug : verbosity == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  for (auto& c : commands)
    if (c.app->parsed()) return c.run();
  return cli::kExitUsage;
}
