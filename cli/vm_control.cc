// `minihv vm status|stats|pause|resume|stop --api SOCK`: steer a running VM through its socket.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "vmm/api.h"

namespace minihv::cli {

namespace {

int call(const std::string& api, const std::string& cmd) {
  auto reply = api_call(api, {{"cmd", cmd}});
  if (!reply) {
    std::fprintf(stderr, "minihv: error: %s\n", reply.message().c_str());
    return kExitFailure;
  }
  std::printf("%s\n", reply->dump(2).c_str());
  return reply->value("ok", false) ? kExitOk : kExitFailure;
}

}  // namespace

std::vector<Command> add_vm_commands(CLI::App& app) {
  CLI::App* vm = app.add_subcommand("vm", "Steer a running VM through its control socket");
  vm->require_subcommand(1);
  std::vector<Command> out;
  for (const char* cmd : {"status", "stats", "pause", "resume", "stop"}) {
    auto api = std::make_shared<std::string>();
    CLI::App* sub = vm->add_subcommand(cmd, std::string("Send '") + cmd + "' and print the JSON reply");
    sub->add_option("--api", *api, "The VM's control socket")->required();
    out.push_back({sub, [api, c = std::string(cmd)] { return call(*api, c); }});
  }
  return out;
}

}  // namespace minihv::cli
