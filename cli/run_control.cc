#include "cli/run_control.h"

#include <cstdio>
#include <cstdlib>

#include "migrate/transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <optional>

#include "common/json_text.h"
#include "migrate/migration.h"

namespace minihv::cli {

namespace {

const char* phase_name(IncomingWait::Phase p) {
  switch (p) {
    case IncomingWait::Phase::kListening: return "listening";
    case IncomingWait::Phase::kReceiving: return "receiving";
    case IncomingWait::Phase::kArrived: return "arrived";
  }
  return "?";
}

// An --incoming VM that has not arrived: it answers status and stop (and console attaches, to
// see the guest once it runs); everything else needs a VM that runs here.
nlohmann::json handle_waiting(Vm& vm, IncomingWait& incoming, const std::string& cmd) {
  if (cmd == "status") {
    nlohmann::json r = vm.status();
    r["state"] = "incoming";
    r["incoming"] = incoming.status();
    r["ok"] = true;
    return r;
  }
  if (cmd == "stop") {
    if (!incoming.cancel())
      return control_refusal("a migrating VM is arriving: stop is refused until it runs here (or the migration fails)");
    vm.stop();
    return {{"ok", true}};
  }
  return control_refusal(cmd + " is refused: this VM waits for a migration (" + json_text(incoming.status()) +
                 "); only status, stop and console are answered until it arrives");
}

}  // namespace

Result<std::unique_ptr<IncomingWait>> IncomingWait::create(std::string address) {
  UniqueFd fd(eventfd(0, EFD_CLOEXEC));
  if (!fd.valid()) return Status::from_errno("eventfd");
  return std::unique_ptr<IncomingWait>(new IncomingWait(std::move(address), std::move(fd)));
}

void IncomingWait::on_progress(const nlohmann::json& event) {
  const std::string what = event.value("event", "");
  std::lock_guard lock(mu_);
  if (what == "listening") address_ = event.value("address", address_);
  if (what == "connected") {
    phase_ = Phase::kReceiving;  // a cancel after this is refused; one before is seen by migrate_in
    peer_ = event.value("peer", "");
  }
}

void IncomingWait::arrived() {
  std::lock_guard lock(mu_);
  phase_ = Phase::kArrived;
}

IncomingWait::Phase IncomingWait::phase() const {
  std::lock_guard lock(mu_);
  return phase_;
}

bool IncomingWait::cancel() {
  std::lock_guard lock(mu_);
  if (phase_ != Phase::kListening) return false;
  if (!cancelled_) {
    uint64_t one = 1;
    (void)!::write(cancel_fd_.get(), &one, sizeof one);
    cancelled_ = true;
  }
  return true;
}

bool IncomingWait::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

nlohmann::json IncomingWait::status() const {
  std::lock_guard lock(mu_);
  nlohmann::json j{{"phase", phase_name(phase_)}, {"address", address_}};
  if (!peer_.empty()) j["peer"] = peer_;
  return j;
}

ControlPlugin migration_plugin(Vm& vm, MigrationControl& migration, IncomingWait* incoming) {
  ControlPlugin plugin;
  if (incoming)
    plugin.intercept = [&vm, incoming](const std::string& cmd) -> std::optional<nlohmann::json> {
      if (incoming->phase() == IncomingWait::Phase::kArrived) return std::nullopt;
      return handle_waiting(vm, *incoming, cmd);
    };
  plugin.commands = {
      {"migrate", [&vm, &migration](const nlohmann::json& req, const ApiServer::Progress& progress) {
         return migration.migrate(vm, req, progress);
       }},
      {"migrate-resolve", [&vm, &migration](const nlohmann::json& req, const ApiServer::Progress&) {
         return migration.resolve(vm, req);
       }},
  };
  plugin.status_key = "migration";
  plugin.status = [&migration] { return migration.status(); };
  // A migration owns the VM's run state: a resume in its switchover would run the guest here while
  // the destination takes it over.
  plugin.run_state = [&migration](const std::string& cmd, const ControlPlugin::RunStateChange& change) {
    migrate::MigrationGuard guard(migration.busy());  // held across the change: no migration starts meanwhile
    if (!guard.owned())
      return control_refusal("the VM is migrating (or its migration is being settled): " + cmd +
                             " is refused until that ends");
    if (std::string why = migration.in_doubt_reason(); !why.empty())
      return control_refusal(cmd + " is refused: " + why);
    return change();
  };
  return plugin;
}

std::vector<std::string> command_names(const ApiServer::StreamCommands& streams) {
  std::vector<std::string> names;
  for (const auto& stream : streams) names.push_back(stream.first);
  return names;
}

ApiServer::StreamCommands stream_commands(Vm& vm) {
  ApiServer::StreamOpener console = [&vm](const nlohmann::json&) -> Result<ApiServer::Stream> {
    std::shared_ptr<ConsoleHub::Client> client = vm.console().attach();
    if (!client) return Status::error("cannot attach a console client (eventfd)");
    return ApiServer::Stream([&vm, client](int fd, int stop_fd, const std::string& early) {
      pump_console(fd, stop_fd, *client, [&vm](const std::string& keys) { vm.console_input(keys); }, early);
    });
  };
  return {{"console", console}};
}

namespace {

constexpr const char* kInsecureWarning =
    "minihv: warning: --insecure: the migration streams are plain TCP: anyone on the network path can read "
    "the guest's memory and machine state, and anyone who reaches the port first can push a VM of their own "
    "into it\n";

}  // namespace

Result<std::optional<keys::Secret>> migration_file_key(const std::string& file, bool insecure) {
  const char* env = std::getenv(kTlsPskEnv);
  const std::string path = !file.empty() ? file : env ? env : "";
  if (insecure) {
    if (!file.empty()) return Status::invalid("--tls-psk and --insecure exclude each other");
    std::fputs(kInsecureWarning, stderr);
    return std::optional<keys::Secret>();
  }
  if (path.empty())
    return Status::invalid(std::string("a migration needs a key: --tls-psk FILE (or ") + kTlsPskEnv +
                           "=FILE), or --insecure for plain TCP");
  auto key = keys::read_key(path);
  if (!key) return Status::invalid(key.message());
  return std::optional<keys::Secret>(*key);
}

Result<std::optional<tls::Psk>> migration_psk_of(const nlohmann::json& req) {
  if (req.value("insecure", false)) return std::optional<tls::Psk>();
  std::optional<keys::Secret> key;
  if (req.contains("psk")) {
    auto k = keys::parse_text(req["psk"].is_string() ? req["psk"].get<std::string>() : std::string());
    if (!k) return Status::invalid("psk: " + k.message());
    key = *k;
  } else if (const char* env = std::getenv(kTlsPskEnv); env && *env) {
    auto k = keys::read_key(env);
    if (!k) return Status::invalid(k.message());
    key = *k;
  } else {
    return Status::invalid(std::string("the migrate command carries no key (\"psk\") and ") + kTlsPskEnv +
                           " is not set: give the key, or \"insecure\": true for plain TCP");
  }
  auto psk = migrate::migration_psk(*key);
  if (!psk) return psk.status();
  return std::optional<tls::Psk>(*psk);
}

}  // namespace minihv::cli
