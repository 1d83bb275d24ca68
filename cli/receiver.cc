// `minihv receiver serve|prepare|cancel`: Pacemaker's way to move a VM live (pcmk/receiver.h).
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "cli/report.h"
#include "common/json_text.h"
#include "pcmk/receiver.h"

namespace minihv::cli {
namespace {

// The agent's state directory (pcmk/ocf/vm.in uses the same default).
constexpr const char* kDefaultStateDir = "/run/minihv/ocf";

struct ServeOptions {
  pcmk::ReceiverOptions r;
  std::string key;
};

int serve(ServeOptions& o) {
  auto key = load_cluster_key(o.key);
  if (!key) return fail(key.status());
  o.r.cluster_key = *key;
  auto exe = self_exe();
  if (!exe) return fail(exe.status());
  o.r.binary = *exe;
  sigset_t set = block_stop_signals();  // before any thread: this one takes them
  ::unsetenv("MINIHV_TLS_PSK");  // incoming VMs use their move's key only
  auto receiver = pcmk::Receiver::start(o.r);
  if (!receiver) return fail(receiver.status());
  std::fprintf(stderr, "minihv: receiver serving on %s (VMs' files in %s)\n", (*receiver)->address().c_str(),
               o.r.state_dir.c_str());
  int sig = 0;
  sigwait(&set, &sig);
  // Incoming VMMs it started go on: they are their own sessions, the agent's from now on.
  return kExitOk;
}

struct PrepareOptions {
  std::string to, key, move_key;
  pcmk::IncomingRequest r;
  bool json = false;
};

int prepare(const PrepareOptions& o) {
  auto key = load_cluster_key(o.key);
  if (!key) return fail(key.status(), o.json);
  auto p = pcmk::prepare_incoming(*key, o.to, o.r);
  if (!p) return fail(p.status(), o.json);
  auto mk = pcmk::move_key(*key, p->move_id);
  if (!mk) return fail(mk.status(), o.json);
  // The move's key is a throwaway of this move: an earlier one at the path is replaced.
  ::unlink(o.move_key.c_str());
  if (Status s = keys::write_key(o.move_key, *mk); !s) {
    (void)pcmk::cancel_incoming(*key, o.to, o.r.name);  // nobody could move to it
    return fail(s, o.json);
  }
  if (o.json)
    std::printf("%s\n", json_text({{"ok", true}, {"address", p->address}, {"move_id", p->move_id}}).c_str());
  else
    std::printf("%s\n", p->address.c_str());
  return kExitOk;
}

}  // namespace

std::vector<Command> add_receiver_commands(CLI::App& app) {
  CLI::App* top = app.add_subcommand(
      "receiver", "Accept VMs that Pacemaker moves live to this host (the ocf:minihv:vm agent; docs/pacemaker.md)");
  top->require_subcommand(1);

  auto so = std::make_shared<ServeOptions>();
  so->r.state_dir = kDefaultStateDir;
  CLI::App* s = top->add_subcommand("serve", "Serve this host's receiver: starts `minihv run --incoming` on request");
  s->add_option("--listen", so->r.listen, "HOST:PORT to serve (TLS 1.3 keyed from the cluster key)")->required();
  s->add_option("--migration-address", so->r.migration_host,
                "The address incoming VMs listen on (default: --listen's host)");
  s->add_option("--state-dir", so->r.state_dir, "The agent's state directory (its state_dir parameter)")
      ->capture_default_str();
  s->add_option("--key", so->key, std::string("The cluster key file (default $MINIHV_KEY, else ") + kDefaultKeyFile +
                                       "; minihv cluster init-key)");

  auto po = std::make_shared<PrepareOptions>();
  CLI::App* p = top->add_subcommand("prepare", "Ask a host's receiver to wait for a VM; prints where it listens");
  p->add_option("--to", po->to, "The receiver's HOST:PORT")->required();
  p->add_option("--name", po->r.name, "The VM's name (the resource's)")->required();
  p->add_option("--mem", po->r.mem, "Guest RAM, checked against the source's");
  p->add_option("--cpus", po->r.cpus, "vCPUs, checked against the source's");
  p->add_option("--cpu-model", po->r.cpu_model, "CPU model, checked against the source's");
  p->add_option("--disk", po->r.disks, "VOLUME:DISK, one per disk of the source, in its order");
  p->add_option("--net", po->r.nets, "tap=NAME[,...], one per NIC of the source, in its order");
  p->add_option("--move-key", po->move_key, "Write this move's stream key here, replacing an earlier one (for minihv migrate --tls-psk)")
      ->required();
  p->add_option("--key", po->key, std::string("The cluster key file (default $MINIHV_KEY, else ") + kDefaultKeyFile + ")");
  p->add_flag("--json", po->json, "Print one JSON object instead of text");

  auto co = std::make_shared<PrepareOptions>();
  CLI::App* c = top->add_subcommand("cancel", "Stop a VM a receiver waits for that never arrived");
  c->add_option("--to", co->to, "The receiver's HOST:PORT")->required();
  c->add_option("--name", co->r.name, "The VM's name")->required();
  c->add_option("--key", co->key, std::string("The cluster key file (default $MINIHV_KEY, else ") + kDefaultKeyFile + ")");

  return {{s, [so] { return serve(*so); }},
          {p, [po] { return prepare(*po); }},
          {c, [co] {
             auto key = load_cluster_key(co->key);
             if (!key) return fail(key.status());
             Status st = pcmk::cancel_incoming(*key, co->to, co->r.name);
             return st ? kExitOk : fail(st);
           }}};
}

}  // namespace minihv::cli
