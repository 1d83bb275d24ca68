// cli/doc: the model read from a CLI11 tree, and what each output makes of it (a made-up CLI, so
// the tests pin the generators, not minihv's commands; the real ones: integration/cli_doc_test.cc).
#include "cli/doc/clidoc.h"

#include <gtest/gtest.h>

namespace minihv::cli::doc {
namespace {

struct ToyCli {
  CLI::App app{"toy: a made-up command line", "minihv"};
  std::string s;
  std::vector<std::string> many;
  unsigned n = 1;
  bool b = false;
  ToyCli() {
    app.add_flag("-v,--verbose", b, "Say more");
    CLI::App* cluster = app.add_subcommand("cluster", "The cluster");
    cluster->add_option("--node", s, "HOST:PORT of a node");
    CLI::App* vm = cluster->add_subcommand("vm", "VMs");
    CLI::App* add = vm->add_subcommand("add", "Add a VM | with a pipe");
    add->add_option("name", s, "VM name")->required();
    add->add_option("--kernel", s, "Kernel file")->required();
    add->add_option("--cpus", n, "vCPUs")->capture_default_str();
    add->add_option("--disk", many, "Disk image (repeatable)");
    add->add_flag("--start", b, "Start it \\now");
    add->add_option("--secret", s, "Not for users")->group("");
    vm->add_subcommand("rm", "Remove a VM")->add_option("name", s, "VM name")->required();
    app.add_subcommand("hidden", "Not shown")->group("");
    app.add_subcommand("run", ".starts with a dot")->add_option("--kernel", s, "Kernel image");
  }
};

TEST(CliDoc, DescribeReadsTheVisibleTree) {
  ToyCli t;
  const CommandDoc root = describe(t.app);
  ASSERT_EQ(root.subcommands.size(), 2u) << "the hidden command is left out";
  const CommandDoc& add = root.subcommands[0].subcommands[0].subcommands[0];
  EXPECT_EQ(add.name(), "minihv cluster vm add");
  ASSERT_EQ(add.options.size(), 5u) << "--help and the hidden option are left out";
  EXPECT_EQ(add.options[0].display(), "<name>");
  EXPECT_TRUE(add.options[0].required);
  EXPECT_EQ(add.options[1].display(), "--kernel TEXT");
  EXPECT_TRUE(add.options[1].file);
  EXPECT_EQ(add.options[2].display(), "--cpus UINT");
  EXPECT_EQ(add.options[2].default_value, "1");
  EXPECT_FALSE(add.options[2].file);
  EXPECT_TRUE(add.options[3].repeatable);
  EXPECT_EQ(add.options[4].display(), "--start") << "a flag takes no value";
  EXPECT_EQ(add.usage(), "minihv cluster vm add <name> --kernel TEXT [OPTIONS]");
  EXPECT_EQ(root.options[0].display(), "-v, --verbose");
}

TEST(CliDoc, LeafListHasEveryLeafWithItsRequiredArguments) {
  ToyCli t;
  EXPECT_EQ(leaf_list(describe(t.app)), "cluster vm add <name> --kernel\ncluster vm rm <name>\nrun\n");
}

TEST(CliDoc, CompletionTables) {
  ToyCli t;
  const std::string s = bash_completion(describe(t.app));
  EXPECT_NE(s.find("    \"\") echo \"cluster run\" ;;"), std::string::npos) << s;
  EXPECT_NE(s.find("    \"cluster vm\") echo \"add rm\" ;;"), std::string::npos) << s;
  EXPECT_NE(s.find("    \"cluster vm add|--kernel\") echo file ;;"), std::string::npos) << s;
  EXPECT_NE(s.find("    \"cluster vm add|--cpus\") echo value ;;"), std::string::npos) << s;
  EXPECT_NE(s.find("    \"cluster|--node\") echo value ;;"), std::string::npos) << s;
  EXPECT_EQ(s.find("cluster vm add|--start"), std::string::npos) << "a flag takes no argument";
  EXPECT_EQ(s.find("hidden"), std::string::npos);
  EXPECT_EQ(s.find("--secret"), std::string::npos);
  EXPECT_NE(s.find("complete -F _minihv minihv"), std::string::npos);
}

TEST(CliDoc, MarkdownEscapesTableCellsAndCarriesTheProse) {
  ToyCli t;
  const std::string md = markdown(describe(t.app));
  EXPECT_NE(md.find("### minihv cluster vm add\n\nAdd a VM | with a pipe\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| `--cpus UINT` | vCPUs. Default: `1`. |"), std::string::npos) << md;
  EXPECT_NE(md.find("| `<name>` | VM name. Required. |"), std::string::npos) << md;
  EXPECT_NE(md.find("- [`minihv cluster vm add`](#minihv-cluster-vm-add): Add a VM \\| with a pipe"), std::string::npos) << md;
  for (const auto& e : kExitStatuses) EXPECT_NE(md.find("| " + std::to_string(e.code) + " | "), std::string::npos);
  EXPECT_NE(md.find("## Conventions"), std::string::npos);
}

TEST(CliDoc, ManPageEscapesRoff) {
  ToyCli t;
  const std::string man = man_page(describe(t.app), "9.9");
  EXPECT_EQ(man.find(".TH MINIHV 1 \"\" \"minihv 9.9\""), man.find(".TH")) << man;
  EXPECT_NE(man.find(".TP\n\\fB\\-\\-kernel\\fR \\fITEXT\\fR\nKernel file. Required.\n"), std::string::npos) << man;
  EXPECT_NE(man.find("Start it \\enow"), std::string::npos) << "a backslash is \\e";
  EXPECT_NE(man.find("\n\\&.starts with a dot\n"), std::string::npos) << "a line never starts with a request";
  EXPECT_NE(man.find(".SH \"EXIT STATUS\"\n.TP\n.B 0\n"), std::string::npos);
  EXPECT_NE(man.find(".SH FILES"), std::string::npos);
  EXPECT_NE(man.find(".SH SEE ALSO"), std::string::npos);
}

}  // namespace
}  // namespace minihv::cli::doc
