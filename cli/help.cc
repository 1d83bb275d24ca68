// `minihv help [COMMAND...] [--markdown|--man|--list]` and `minihv completion bash`: the command line
// documented from its own definition (cli/doc/clidoc.h).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/doc/clidoc.h"

namespace minihv::cli {

namespace {

static_assert(doc::kExitStatuses[0].code == kExitOk && doc::kExitStatuses[1].code == kExitFailure &&
              doc::kExitStatuses[2].code == kExitUsage && doc::kExitStatuses[3].code == kExitInDoubt,
              "the documented exit statuses are the ones commands return");

struct HelpOptions {
  std::vector<std::string> path;
  bool markdown = false, man = false, list = false;
  std::string output;
  std::string shell;
};

int emit(const std::string& text, const std::string& output) {
  if (output.empty() || output == "-") {
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  }
  std::ofstream f(output);
  f << text;
  if (!f) {
    std::fprintf(stderr, "minihv: error: cannot write %s\n", output.c_str());
    return kExitFailure;
  }
  return kExitOk;
}

// The help of the command `path` names (minihv's own for an empty path).
int help_for(const CLI::App& root, const std::vector<std::string>& path) {
  const CLI::App* app = &root;
  std::string name = "minihv";
  for (const auto& word : path) {
    auto subs = app->get_subcommands([&](const CLI::App* a) { return a->get_name() == word; });
    if (subs.empty()) {
      std::fprintf(stderr, "minihv: error: '%s' has no command '%s'\nrun 'minihv help' for the commands\n",
                   name.c_str(), word.c_str());
      return kExitUsage;
    }
    app = subs.front();
    name += " " + word;
  }
  std::fputs(app->help().c_str(), stdout);
  return kExitOk;
}

int help_cmd(const CLI::App& root, const HelpOptions& o) {
  if (o.markdown + o.man + o.list > 1) {
    std::fprintf(stderr, "minihv: error: help: choose one of --markdown, --man, --list\n");
    return kExitUsage;
  }
  const doc::CommandDoc tree = doc::describe(root);
  if (o.markdown) return emit(doc::markdown(tree), o.output);
  if (o.man) return emit(doc::man_page(tree, MINIHV_VERSION), o.output);
  if (o.list) return emit(doc::leaf_list(tree), o.output);
  return help_for(root, o.path);
}

}  // namespace

std::vector<Command> add_help_commands(CLI::App& app) {
  std::vector<Command> out;
  auto ho = std::make_shared<HelpOptions>();
  CLI::App* help = app.add_subcommand("help", "Help for a command, or the whole command line as docs");
  help->add_option("command", ho->path, "The command to explain (e.g. cluster vm add)");
  help->add_flag("--markdown", ho->markdown, "Print docs/cli.md: every command and option");
  help->add_flag("--man", ho->man, "Print the man page minihv.1 (roff)");
  help->add_flag("--list", ho->list, "Print every leaf command with its required arguments, one per line")->group("");
  help->add_option("-o,--output", ho->output, "Write to this file instead of stdout");
  out.push_back({help, [ho, &app] { return help_cmd(app, *ho); }});

  auto co = std::make_shared<HelpOptions>();
  CLI::App* completion = app.add_subcommand("completion", "Print a shell completion script");
  completion->add_option("shell", co->shell, "The shell (bash)")->required()->check(CLI::IsMember({"bash"}));
  completion->add_option("-o,--output", co->output, "Write to this file instead of stdout");
  out.push_back({completion, [co, &app] { return emit(doc::bash_completion(doc::describe(app)), co->output); }});
  return out;
}

}  // namespace minihv::cli
