// pcmk/receiver.h — the per-host endpoint that lets Pacemaker move a minihv VM here live.
//
// Pacemaker moves a resource live by calling migrate_to on the source host, migrate_from on the
// target, then stop on the source (the ocf:minihv:vm agent, pcmk/ocf/vm). Nothing runs on the
// target before migrate_to, so the source's agent asks the target's receiver (`minihv receiver
// serve`, one per host) to start `minihv run --incoming` for the VM; then it runs `minihv
// migrate` to it. The receiver answers only requests over TLS 1.3 keyed from the cluster key
// (cluster/rpc.h: a peer without the key finishes no handshake), and starts nothing but incoming
// VMs whose disks are volume disks: the source's VMM holds each disk's lease and hands it over
// after the ACK, so an incoming VM never writes a disk its source still holds.
//
// Each move gets its own stream key, derived from the cluster key and a move id the receiver
// mints (keys::migration_label), written for the incoming VMM and gone once it listens.
//
// Owns: the incoming VMMs it started until they have arrived (the agent's files in `state_dir`
// are its from then on: NAME.sock, NAME.pid, NAME.log, NAME.console; docs/pacemaker.md), and
// the names of VMs and disks it accepts.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/jsonl.h"
#include "common/keys.h"
#include "common/status.h"

namespace minihv::pcmk {

// A resource's files in the state directory; the agent uses the same names.
struct VmFiles {
  std::string sock, pid, log, console, key;
  static VmFiles in(const std::string& state_dir, const std::string& name);
};

// What the source's agent asks for: the VM's shape (checked again by the source's HELLO) and
// the target's disks and NICs, in the source's order.
struct IncomingRequest {
  std::string name;
  std::string mem, cpu_model;  // "" for the source's
  unsigned cpus = 0;           // 0 for the source's
  std::vector<std::string> disks, nets;

  nlohmann::json to_json() const;
  static Result<IncomingRequest> from_json(const nlohmann::json& j);  // invalid-input on bad fields
};

// What the receiver answers: where the incoming VM listens, and the move id its key derives from.
struct Prepared {
  std::string address;  // HOST:PORT for `minihv migrate --to`
  std::string move_id;
};

struct ReceiverOptions {
  std::string listen;          // HOST:PORT this endpoint serves
  std::string migration_host;  // where incoming VMs listen ("" for listen's host)
  std::string state_dir;       // the agent's state directory (pcmk/ocf/vm: /run/minihv/ocf)
  std::string binary;          // minihv itself
  keys::Secret cluster_key;
};

class Receiver {
public:
  static Result<std::unique_ptr<Receiver>> start(ReceiverOptions o);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  const std::string& address() const { return o_.listen; }

private:
  explicit Receiver(ReceiverOptions o) : o_(std::move(o)) {}
  nlohmann::json handle(const nlohmann::json& req);
  Result<Prepared> prepare(const IncomingRequest& r);
  Status cancel(const std::string& name);
  Status clear_stale(const std::string& name);  // an earlier incoming of the name that never arrived

  ReceiverOptions o_;
  std::mutex mu_;  // one prepare or cancel at a time
  std::unique_ptr<jsonl::Server> server_;
};

// The source's side (`minihv receiver prepare|cancel`): `receiver` is the target's HOST:PORT.
Result<Prepared> prepare_incoming(const keys::Secret& cluster_key, const std::string& receiver,
                                  const IncomingRequest& r);
Status cancel_incoming(const keys::Secret& cluster_key, const std::string& receiver, const std::string& name);
// The stream key of a move (both ends): what `minihv migrate --tls-psk` and `run --tls-psk` read.
Result<keys::Secret> move_key(const keys::Secret& cluster_key, const std::string& move_id);

}  // namespace minihv::pcmk
