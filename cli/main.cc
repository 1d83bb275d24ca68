// minihv — a small KVM hypervisor that boots, live-migrates and fails over guests.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/log.h"

namespace {

using namespace minihv;

// What is wrong when the words name no command: "minihv bogus", "minihv cluster frob" (not a
// command) or "minihv volume disk" (needs one). Empty when the error is another one.
std::string unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  std::string path = "minihv";
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return "";  // an option first: CLI11's own message is right
    if (at->get_subcommands({}).empty()) return "";
    CLI::App* next = nullptr;
    for (CLI::App* sub : at->get_subcommands({}))
      if (sub->get_name() == word) next = sub;
    if (!next) {
      std::string names;
      for (CLI::App* sub : at->get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
      return "'" + path + " " + word + "' is not a command (" + path + " has: " + names + ")";
    }
    at = next;
    path += " " + word;
  }
  if (at->get_require_subcommand_min() == 0) return "";
  std::string names;
  for (CLI::App* sub : at->get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
  return "'" + path + "' needs a command: " + names;
}

}  // namespace

int main(int argc, char** argv) {
  // No peer ends a minihv process by closing its end: a write to a closed socket or pipe (a node gone,
  // a reader of stdout gone) fails with EPIPE, and the caller decides (every process, every command).
  ::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"minihv: a small KVM hypervisor with live migration and failover", "minihv"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("minihv ") + MINIHV_VERSION);
  // Options of a command are accepted after its subcommands too ("minihv run ... -v",
  // "minihv cluster status --node X"): every subcommand inherits this from its parent.
  app.fallthrough();
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "More diagnostics on stderr (-vv for debug)");

  std::vector<cli::Command> commands{cli::add_run_command(app), cli::add_ps_command(app),
                                     cli::add_console_command(app)};
  for (auto& c : cli::add_vm_commands(app)) commands.push_back(std::move(c));
  for (auto& c : cli::add_cpuid_commands(app)) commands.push_back(std::move(c));
  for (auto& c : cli::add_volume_commands(app)) commands.push_back(std::move(c));
  commands.push_back(cli::add_migrate_command(app));
  for (auto& c : cli::add_receiver_commands(app)) commands.push_back(std::move(c));
  for (auto& c : cli::add_cluster_commands(app)) commands.push_back(std::move(c));
  for (auto& c : cli::add_help_commands(app)) commands.push_back(std::move(c));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string unknown = unknown_command(app, argc, argv);
    std::fprintf(stderr, "minihv: error: %s\nrun 'minihv --help' or 'minihv <command> --help' for usage\n",
                 unknown.empty() ? e.what() : unknown.c_str());
    return cli::kExitUsage;
  }
  set_log_level(verbosity >= 2 ? LogLevel::kDebug : verbosity == 1 ? LogLevel::kInfo : LogLevel::kWarn);
  for (auto& c : commands)
    if (c.app->parsed()) return c.run();
  return cli::kExitUsage;
}
