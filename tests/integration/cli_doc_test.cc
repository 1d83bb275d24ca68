// The command line documents itself: bash completion, docs/cli.md, the man page and the install
// target, all from the real binary's CLI definition.
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/harness/harness.h"
#include "tests/harness/netns.h"

namespace minihv::test {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

class Completion : public ::testing::Test {
protected:
  void SetUp() override {
    auto r = run_cmd({minihv_binary(), "completion", "bash", "--output", script_});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  // What bash offers for the words typed (a trailing space starts an empty word), calling _minihv
  // as `complete -F` would; sorted.
  std::vector<std::string> complete(const std::string& typed) {
    std::vector<std::string> w = words(typed);
    if (typed.back() == ' ') w.push_back("");
    std::string array;
    for (const auto& x : w) array += " '" + x + "'";
    const std::string prog = "source '" + script_ + "' || exit 9\nCOMP_WORDS=(" + array + ")\nCOMP_CWORD=" +
                             std::to_string(w.size() - 1) + "\n_minihv\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
    auto r = run_cmd({"bash", "-c", prog});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    std::vector<std::string> out = words(r.out);
    std::sort(out.begin(), out.end());
    return out;
  }
  TempDir dir_;
  std::string script_ = dir_.file("minihv.bash");
};

using Words = std::vector<std::string>;

TEST_F(Completion, TopLevelCommand) { EXPECT_EQ(complete("minihv cl"), Words{"cluster"}); }

TEST_F(Completion, SubcommandsAtDepth) {
  EXPECT_EQ(complete("minihv cluster vm "), (Words{"add", "rm", "set", "start", "stop"}));
  // An option's value before the command does not confuse the walk.
  EXPECT_EQ(complete("minihv cluster --node 127.0.0.1:7700 vm st"), (Words{"start", "stop"}));
  EXPECT_EQ(complete("minihv cluster --node status vm "), (Words{"add", "rm", "set", "start", "stop"}))
      << "a value that reads like a command is still the option's";
}

TEST_F(Completion, OptionsOfTheCommand) {
  EXPECT_EQ(complete("minihv run --ke"), Words{"--kernel"});
  const auto add = complete("minihv cluster vm add --");
  for (const char* o : {"--kernel", "--mem", "--cpus", "--no-ha", "--help"})
    EXPECT_NE(std::find(add.begin(), add.end(), o), add.end()) << o;
}

TEST_F(Completion, FilesForPathOptions) {
  std::ofstream(dir_.file("vmlinuz-test")) << "x";
  EXPECT_EQ(complete("minihv run --kernel " + dir_.file("vmlinuz-")), Words{dir_.file("vmlinuz-test")});
  EXPECT_EQ(complete("minihv run --cpus " + dir_.file("vmlinuz-")), Words{}) << "a count is not a file";
}

TEST(CliDocs, CliMarkdownIsUpToDate) {
  auto r = run_cmd({minihv_binary(), "help", "--markdown"});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string path = source_dir() + "/docs/cli.md";
  if (std::getenv("MINIHV_UPDATE_GOLDEN")) std::ofstream(path) << r.out;
  EXPECT_EQ(slurp(path), r.out) << "docs/cli.md is stale: run `build/minihv help --markdown > docs/cli.md`";
}

TEST(CliDocs, MarkdownHasEveryCommandAndTheConventions) {
  auto r = run_cmd({minihv_binary(), "help", "--markdown"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* s : {"### minihv cluster vm add", "`--kernel TEXT`", "| 3 |", "minihv: error:",
                        "{\"ok\":false,\"error\":\"...\"}", "`*_bytes`", "`*_ms`", "### minihv completion"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  EXPECT_EQ(r.out.find("--fence-fd"), std::string::npos) << "hidden options stay hidden";
}

TEST(CliDocs, ListNamesEveryLeafWithWhatItRequires) {
  auto r = run_cmd({minihv_binary(), "help", "--list"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  for (const char* l : {"cluster vm add <name> --kernel", "cluster vm rm <name>", "node --name --volume --listen",
                        "run", "cpuid compare --guest", "completion <shell>", "help"})
    EXPECT_NE(std::find(lines.begin(), lines.end(), l), lines.end()) << l << "\n" << r.out;
  EXPECT_EQ(std::find(lines.begin(), lines.end(), "cluster vm"), lines.end()) << "only leaves";
}

TEST(CliDocs, HelpForACommandPath) {
  auto r = run_cmd({minihv_binary(), "help", "cluster", "vm", "add"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("--kernel"), std::string::npos) << r.out;
  auto bad = run_cmd({minihv_binary(), "help", "cluster", "bogus"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_EQ(bad.err.rfind("minihv: error: ", 0), 0u) << bad.err;
}

TEST(CliDocs, InstallPutsTheBinaryManPageAndCompletionInPlace) {
  TempDir prefix;
  auto r = run_cmd({MINIHV_CMAKE_COMMAND, "--install", MINIHV_BINARY_DIR, "--prefix", prefix.path()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  struct stat st{};
  EXPECT_EQ(::stat(prefix.file("bin/minihv").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR);
  const std::string man = prefix.file("share/man/man1/minihv.1");
  const std::string completion = prefix.file("share/bash-completion/completions/minihv");
  EXPECT_EQ(slurp(completion), run_cmd({minihv_binary(), "completion", "bash"}).out);
  EXPECT_EQ(slurp(man), run_cmd({minihv_binary(), "help", "--man"}).out);
  // It renders, and without a single warning.
  auto render = run_cmd({"env", "MANWIDTH=80", "man", "--warnings", "-l", man});
  if (render.status == 127) render = run_cmd({"groff", "-man", "-Tutf8", "-ww", "-z", man});  // no man-db
  EXPECT_EQ(render.status, 0) << render.err;
  EXPECT_EQ(render.err, "");
  if (!render.out.empty()) {
    EXPECT_NE(render.out.find("EXIT STATUS"), std::string::npos);
    EXPECT_NE(render.out.find("cluster vm add"), std::string::npos);
  }
}

}  // namespace
}  // namespace minihv::test
