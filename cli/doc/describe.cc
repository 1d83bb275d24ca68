// describe(): a CLI11 app tree as the plain model every output renders.
#include <array>
#include <cctype>
#include <string_view>

#include "cli/doc/clidoc.h"

namespace minihv::cli::doc {

namespace {

// What CLI11 calls a value of this type ("TEXT", "UINT:INT in [1 - 255]"): the name before a validator.
std::string value_name(const CLI::Option& o) {
  std::string t = o.get_type_name();
  return t.substr(0, t.find(':'));
}

// Whether the value is a path, "where easy": a file-like type name, or a help text that says so.
bool takes_file(const CLI::Option& o, const std::string& value) {
  if (value == "FILE" || value == "PATH" || value == "DIR") return true;
  std::string help = o.get_description();
  for (char& c : help) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  constexpr std::array<std::string_view, 8> kWords = {"file", "path", "socket", "directory",
                                                      "volume", "ramdisk", "image", "dump"};
  for (std::string_view w : kWords)
    if (help.find(w) != std::string::npos) return true;
  return false;
}

bool flag(const CLI::Option& o) { return o.get_expected_max() == 0 || o.get_type_size_max() == 0; }

OptionDoc describe_option(const CLI::Option& o) {
  OptionDoc d;
  for (const auto& s : o.get_snames()) d.names.push_back("-" + s);
  for (const auto& l : o.get_lnames()) d.names.push_back("--" + l);
  if (d.names.empty()) d.positional = o.get_single_name();
  d.help = o.get_description();
  d.default_value = o.get_default_str();
  d.required = o.get_required();
  if (!flag(o)) {
    d.value = value_name(o);
    d.repeatable = o.get_items_expected_max() > 1;
    d.file = takes_file(o, d.value);
  }
  return d;
}

CommandDoc describe_at(const CLI::App& app, std::vector<std::string> path) {
  CommandDoc c;
  c.path = std::move(path);
  c.description = app.get_description();
  const CLI::Option* help = app.get_help_ptr();
  for (const CLI::Option* o : app.get_options([&](const CLI::Option* o) { return o != help && !o->get_group().empty(); }))
    c.options.push_back(describe_option(*o));
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App* a) {
         return !a->get_name().empty() && !a->get_group().empty();  // "": an option group, or hidden
       })) {
    std::vector<std::string> p = c.path;
    p.push_back(sub->get_name());
    c.subcommands.push_back(describe_at(*sub, std::move(p)));
  }
  return c;
}

}  // namespace

std::string OptionDoc::spelled() const {
  if (names.empty()) return "<" + positional + ">" + (repeatable ? "..." : "");
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::string OptionDoc::display() const {
  if (names.empty() || value.empty()) return spelled();
  return spelled() + " " + value + (repeatable ? "..." : "");
}

std::string OptionDoc::explained() const {
  std::string s = help;
  if (!s.empty() && s.back() != '.') s += '.';
  if (required) s += " Required.";
  if (!default_value.empty()) s += " Default: `" + default_value + "`.";
  return s;
}

std::string CommandDoc::name() const {
  std::string s = "minihv";
  for (const auto& p : path) s += " " + p;
  return s;
}

std::string CommandDoc::usage() const {
  std::string s = name();
  bool optional = false;
  for (const auto& o : options) {
    if (!o.required) {
      optional = optional || !o.names.empty();
      continue;
    }
    s += " " + (o.names.empty() ? o.display() : o.names.back() + (o.value.empty() ? "" : " " + o.value));
  }
  for (const auto& o : options)
    if (o.names.empty() && !o.required) s += " [" + o.display() + "]";
  if (optional) s += " [OPTIONS]";
  if (!subcommands.empty()) s += " COMMAND";
  return s;
}

CommandDoc describe(const CLI::App& app) { return describe_at(app, {}); }

}  // namespace minihv::cli::doc
