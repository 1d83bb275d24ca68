// cli/doc/clidoc.h — documents the `minihv` command line from its CLI11 definition: bash completion,
// the man page, docs/cli.md and a list of every leaf command for conformance tests.
//
// Owns: reading a CLI11 app tree into a plain model (describe) and rendering that model; the
// hand-written parts (exit statuses, conventions, files) live in prose.cc, once for every output.
// It knows no command: a new subcommand or option appears everywhere without an edit here. Hidden
// commands and options (CLI11 group "") stay out of every output.
#pragma once

#include <CLI/CLI.hpp>

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace minihv::cli::doc {

struct OptionDoc {
  std::vector<std::string> names;  // "-o", "--output"; empty for a positional
  std::string positional;          // a positional's name ("" for an option)
  std::string value;               // what it takes ("TEXT", "UINT", "FILE"); "" for a flag
  std::string help;
  std::string default_value;       // as the help shows it; "" when none
  bool required = false;
  bool repeatable = false;         // takes several values
  bool file = false;               // its value is a path (completed as a file name)

  std::string spelled() const;     // "--kernel", "-o, --output", "<name>"
  std::string display() const;     // "--kernel TEXT", "-o, --output TEXT", "<name>"
  std::string explained() const;   // the help as a sentence, then "Required." and "Default: `1`."
};

struct CommandDoc {
  std::vector<std::string> path;   // {"cluster", "vm", "add"}; {} for minihv itself
  std::string description;
  std::vector<OptionDoc> options;  // visible ones, positionals included, --help left out
  std::vector<CommandDoc> subcommands;

  std::string name() const;        // "minihv cluster vm add"
  std::string usage() const;       // "minihv cluster vm add <name> --kernel TEXT [OPTIONS]"
};

// The visible tree below (and including) `app`.
CommandDoc describe(const CLI::App& app);

// A bash completion script defining _minihv and `complete -F _minihv minihv`.
std::string bash_completion(const CommandDoc& root);
// docs/cli.md: the hand-written conventions, then every command and option.
std::string markdown(const CommandDoc& root);
// minihv.1 (roff, man(7) macros).
std::string man_page(const CommandDoc& root, std::string_view version);
// Every leaf command path with its required arguments, one per line:
// "cluster vm add <name> --kernel" (positionals as <name>, required options by their long name).
std::string leaf_list(const CommandDoc& root);

// --- the hand-written parts (prose.cc) ---
struct ExitStatus {
  int code;
  std::string_view meaning;
};
inline constexpr std::array<ExitStatus, 4> kExitStatuses = {{
    {0, "Success. For `migrate` and `cluster move`: the VM runs on the destination."},
    {1, "Failure: the command was right but could not be done (a peer unreachable, a lease held, a guest "
        "that failed); `minihv: error: ...` on stderr says what and what to do."},
    {2, "Bad input: an unknown command or option, a missing or malformed argument, a file that is not "
        "what it should be. Nothing was changed."},
    {3, "`migrate` only: the switchover is in doubt (the destination may have the VM); the source stays "
        "paused until `migrate --resolve` settles it."},
}};
// A titled list of entries; a term is shown in bold (man) or as code (markdown); text may hold
// `code` in backquotes.
struct Entry {
  std::string_view term;  // "" for a plain paragraph
  std::string_view text;
};
struct Section {
  std::string_view title;
  std::vector<Entry> entries;
};
extern const std::string_view kSummary;  // one line: what minihv is
extern const Section kDescription;
extern const Section kConventions;       // errors, --json, units
extern const Section kJsonOutput;       // the fields of every --json object
extern const Section kEnvironment;
extern const Section kFiles;
extern const Section kSeeAlso;

}  // namespace minihv::cli::doc
