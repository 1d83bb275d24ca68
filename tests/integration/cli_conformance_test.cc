// Every command of `minihv` keeps the conventions of docs/cli.md: --help works, a bad option and a
// missing required argument exit 2 with "minihv: error: ..." on stderr and nothing on stdout, and
// with --json a failure still prints one JSON object {"ok":false,"error":...}. The commands come
// from the binary itself (`minihv help --list`), so a new one is checked without editing this file.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/harness/harness.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr auto kCommandLimit = 30s;  // every invocation here fails or finishes at once
constexpr const char* kErrorPrefix = "minihv: error: ";
constexpr const char* kMissing = "/nonexistent/minihv-conformance";
constexpr const char* kRefusingNode = "127.0.0.1:1";  // nothing listens on port 1

// `minihv args...` with `minihv cluster` pointed at a node that refuses.
MinihvRun minihv(std::vector<std::string> args) {
  return run_minihv(std::move(args), {std::string("MINIHV_NODE=") + kRefusingNode}, kCommandLimit);
}

// One line of `help --list`: "cluster vm add <name> --kernel".
struct Leaf {
  std::vector<std::string> path, positionals, options;
  std::string name() const {
    std::string n;
    for (const auto& w : path) n += (n.empty() ? "" : " ") + w;
    return n;
  }
};

std::vector<Leaf> leaves() {
  const MinihvRun o = minihv({"help", "--list"});
  EXPECT_EQ(o.rc, 0) << o.err;
  std::vector<Leaf> out;
  std::istringstream lines(o.out);
  for (std::string line; std::getline(lines, line);) {
    Leaf l;
    std::istringstream words(line);
    for (std::string w; words >> w;) {
      if (w[0] == '<') l.positionals.push_back(w);
      else if (w[0] == '-') l.options.push_back(w);
      else l.path.push_back(w);
    }
    if (!l.path.empty()) out.push_back(l);
  }
  return out;
}

// A value for a required argument that makes the command fail without harm: a path that does not
// exist, a node that refuses, a size too small to format anything.
std::string failing_value(const std::string& option) {
  if (option == "--to" || option == "--listen") return kRefusingNode;
  if (option == "--size") return "1M";
  if (option == "<shell>") return "bash";
  if (option == "--name" || option == "--cluster" || option == "--kill" || option == "<name>" ||
      option == "<vm>" || option == "<node>")
    return "conformance";
  return kMissing;
}

std::vector<std::string> with_required(const Leaf& l) {
  std::vector<std::string> args = l.path;
  for (const auto& p : l.positionals) args.push_back(failing_value(p));
  for (const auto& o : l.options) {
    args.push_back(o);
    args.push_back(failing_value(o));
  }
  return args;
}

void expect_convention(const MinihvRun& o, const std::string& what) {
  EXPECT_EQ(o.rc, 2) << what << "\n" << o.err;
  EXPECT_EQ(o.err.rfind(kErrorPrefix, 0), 0u) << what << ": stderr must start with '" << kErrorPrefix << "':\n"
                                                << o.err;
  EXPECT_TRUE(o.out.empty()) << what << ": stdout must stay empty:\n" << o.out;
}

TEST(CliConformance, TheListCoversEveryTopLevelCommand) {
  std::set<std::string> top;
  for (const auto& l : leaves()) top.insert(l.path[0]);
  for (const char* c : {"run", "ps", "console", "vm", "cpuid", "volume", "migrate", "receiver", "node", "cluster", "help"})
    EXPECT_TRUE(top.count(c)) << c << " is missing from `minihv help --list`";
}

TEST(CliConformance, EveryCommandHasHelp) {
  for (const auto& l : leaves()) {
    auto args = l.path;
    args.push_back("--help");
    const MinihvRun o = minihv(args);
    EXPECT_EQ(o.rc, 0) << l.name() << "\n" << o.err;
    EXPECT_NE(o.out.find("Usage:"), std::string::npos) << l.name() << ":\n" << o.out;
  }
}

TEST(CliConformance, EveryCommandRefusesAnUnknownOption) {
  for (const auto& l : leaves()) {
    auto args = with_required(l);
    args.push_back("--no-such-option");
    const MinihvRun o = minihv(args);
    expect_convention(o, l.name() + " --no-such-option");
    EXPECT_NE(o.err.find("--no-such-option"), std::string::npos) << l.name() << ":\n" << o.err;
  }
}

TEST(CliConformance, EveryMissingRequiredArgumentIsNamed) {
  unsigned checked = 0;
  for (const auto& l : leaves()) {
    std::vector<std::string> required = l.options;
    required.insert(required.end(), l.positionals.begin(), l.positionals.end());
    for (size_t skip = 0; skip < required.size(); ++skip) {
      std::vector<std::string> args = l.path;
      for (const auto& p : l.positionals) {  // a positional left out takes those after it along
        if (p == required[skip]) break;
        args.push_back(failing_value(p));
      }
      for (const auto& opt : l.options)
        if (opt != required[skip]) {
          args.push_back(opt);
          args.push_back(failing_value(opt));
        }
      const MinihvRun o = minihv(args);
      expect_convention(o, l.name() + " without " + required[skip]);
      // "<name>" is named as "name" by the parser.
      std::string named = required[skip];
      if (named[0] == '<') named = named.substr(1, named.size() - 2);
      EXPECT_NE(o.err.find(named), std::string::npos) << l.name() << " without " << named << ":\n" << o.err;
      ++checked;
    }
  }
  EXPECT_GT(checked, 20u);
}

TEST(CliConformance, EveryJsonFailurePrintsOneErrorObject) {
  unsigned failures = 0;
  for (const auto& l : leaves()) {
    auto help_args = l.path;
    help_args.push_back("--help");
    if (minihv(help_args).out.find("--json") == std::string::npos) continue;
    auto args = with_required(l);
    if (l.options.empty() && l.positionals.empty() && l.path[0] != "cluster") continue;  // nothing to fail on
    args.push_back("--json");
    const MinihvRun o = minihv(args);
    const auto j = nlohmann::json::parse(o.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << l.name() << " --json: stdout is not one JSON value:\n" << o.out << o.err;
    if (o.rc == 0 || j.is_discarded()) continue;
    ++failures;
    EXPECT_EQ(o.err.rfind(kErrorPrefix, 0), 0u) << l.name() << " --json:\n" << o.err;
    if (!j.is_object()) {
      ADD_FAILURE() << l.name() << ": not an object: " << o.out;
      continue;
    }
    EXPECT_EQ(j.value("ok", true), false) << l.name() << ": " << o.out;
    EXPECT_FALSE(j.value("error", std::string()).empty()) << l.name() << ": " << o.out;
  }
  EXPECT_GT(failures, 5u);
}

// Every top-level field of what `command` prints (an object, or an array of objects) is named in
// docs/cli.md's "JSON output" section as `field`.
void expect_fields_documented(const std::vector<std::string>& command, const std::string& docs) {
  const MinihvRun o = minihv(command);
  std::string name;
  for (const auto& w : command) name += w + " ";
  const auto j = nlohmann::json::parse(o.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << name << ": " << o.out << o.err;
  const nlohmann::json& object = j.is_array() && !j.empty() ? j[0] : j;
  ASSERT_TRUE(object.is_object()) << name << ": " << o.out;
  for (const auto& [key, value] : object.items())
    EXPECT_NE(docs.find("`" + key + "`"), std::string::npos) << name << "prints '" << key
                                                              << "', which docs/cli.md's JSON output does not list";
}

TEST(CliConformance, EveryJsonFieldIsDocumented) {
  std::ifstream f(source_dir() + "/docs/cli.md");
  const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t from = all.find("## JSON output"), to = all.find("\n## ", from + 1);
  ASSERT_NE(from, std::string::npos);
  const std::string docs = all.substr(from, to - from);
  TempDir dir;
  const std::string vol = dir.file("vol.img"), api = dir.file("vm.sock"), profile = dir.file("host.json");
  ASSERT_EQ(minihv({"volume", "format", vol, "--cluster", "c", "--size", "64M"}).rc, 0);
  ASSERT_EQ(minihv({"volume", "disk", "create", vol, "d1", "--size", "4M"}).rc, 0);
  expect_fields_documented({"volume", "inspect", vol, "--json"}, docs);
  expect_fields_documented({"volume", "disk", "list", vol, "--json"}, docs);
  const MinihvRun host = minihv({"cpuid", "host", "--json"});
  ASSERT_EQ(host.rc, 0) << host.err;
  std::ofstream(profile) << host.out;
  expect_fields_documented({"cpuid", "host", "--json"}, docs);
  expect_fields_documented({"cpuid", "show", "--json"}, docs);
  expect_fields_documented({"cpuid", "compare", "--guest", profile, "--json"}, docs);
  VmProcess vm({"run", "--kernel", testguest_elf(), "--mem", "64M", "--api", api},
               {"MINIHV_RUN_DIR=" + dir.file("run")});
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=1 ", 20s)) << vm.stderr_text();
  expect_fields_documented({"vm", "status", "--api", api, "--json", "--cpuid"}, docs);
  expect_fields_documented({"vm", "stats", "--api", api}, docs);
  expect_fields_documented({"migrate", "--api", api, "--to", kRefusingNode, "--json"}, docs);
  ASSERT_EQ(minihv({"vm", "stop", "--api", api}).rc, 0);
  EXPECT_EQ(vm.wait_exit(20s).value_or(-1), 0);
}

}  // namespace
}  // namespace minihv::test
