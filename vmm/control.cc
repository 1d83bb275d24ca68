#include "vmm/control.h"

#include "vmm/vm.h"

namespace minihv {

namespace {

constexpr const char* kBuiltinCommands[] = {"status", "stats", "pause", "resume", "stop"};

}  // namespace

ControlledVm ControlledVm::of(Vm& vm) {
  return {[&vm] { return vm.status(); }, [&vm] { return vm.stats(); }, [&vm] { return vm.pause(); },
          [&vm] { return vm.resume(); }, [&vm] { vm.stop(); }};
}

nlohmann::json control_reply(Status s) {
  return s ? nlohmann::json{{"ok", true}} : nlohmann::json{{"ok", false}, {"error", s.message()}};
}

nlohmann::json control_refusal(const std::string& why) { return {{"ok", false}, {"error", why}}; }

VmControl::VmControl(ControlledVm vm, std::vector<std::string> stream_commands, ControlPlugin plugin)
    : vm_(std::move(vm)), stream_commands_(std::move(stream_commands)), plugin_(std::move(plugin)) {}

nlohmann::json VmControl::handle(const nlohmann::json& request, const ApiServer::Progress& progress) const {
  const std::string cmd = request.value("cmd", "");
  if (plugin_.intercept)
    if (auto reply = plugin_.intercept(cmd)) return *reply;
  for (const auto& [name, command] : plugin_.commands)
    if (cmd == name) return command(request, progress);
  return builtin(cmd);
}

ApiServer::Handler VmControl::handler() const {
  return [this](const nlohmann::json& request, const ApiServer::Progress& progress) {
    return handle(request, progress);
  };
}

nlohmann::json VmControl::builtin(const std::string& cmd) const {
  if (cmd == "status") {
    nlohmann::json r = vm_.status();
    if (plugin_.status) r[plugin_.status_key] = plugin_.status();
    r["ok"] = true;
    return r;
  }
  if (cmd == "stats") {
    nlohmann::json r = vm_.stats();
    r["ok"] = true;
    return r;
  }
  if (cmd == "pause" || cmd == "resume") return change_run_state(cmd);
  if (cmd == "stop") {
    vm_.stop();
    return {{"ok", true}};
  }
  return control_refusal(unknown(cmd));
}

nlohmann::json VmControl::change_run_state(const std::string& cmd) const {
  auto change = [this, &cmd] { return control_reply(cmd == "pause" ? vm_.pause() : vm_.resume()); };
  return plugin_.run_state ? plugin_.run_state(cmd, change) : change();
}

std::string VmControl::unknown(const std::string& cmd) const {
  std::string list;
  auto add = [&list](const std::string& name) { list += (list.empty() ? "" : ", ") + name; };
  for (const char* name : kBuiltinCommands) add(name);
  for (const auto& name : stream_commands_) add(name);
  for (const auto& command : plugin_.commands) add(command.first);
  return "unknown command '" + cmd + "' (commands: " + list + ")";
}

}  // namespace minihv
