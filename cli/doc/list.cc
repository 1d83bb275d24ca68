// leaf_list(): every command that runs (no subcommands below it) with what it requires — the walk a
// CLI conformance test takes.
#include "cli/doc/clidoc.h"

namespace minihv::cli::doc {

namespace {

void leaves(std::string& out, const CommandDoc& c) {
  if (!c.subcommands.empty()) {
    for (const auto& s : c.subcommands) leaves(out, s);
    return;
  }
  std::string line;
  for (const auto& p : c.path) line += (line.empty() ? "" : " ") + p;
  for (const auto& o : c.options)
    if (o.required && o.names.empty()) line += " <" + o.positional + ">";
  for (const auto& o : c.options)
    if (o.required && !o.names.empty()) line += " " + o.names.back();  // the long name comes last
  out += line + "\n";
}

}  // namespace

std::string leaf_list(const CommandDoc& root) {
  std::string out;
  leaves(out, root);
  return out;
}

}  // namespace minihv::cli::doc
