// cluster/node.h — `minihv node`: the per-host cluster daemon (DESIGN.md §7, docs/cluster.md).
//
// Owns: joining the cluster (its entry in the volume's configuration), its node lease, a lease on
// every VM it runs (VM lease slot 256+i, and the VM's disk lease), each VM as a child `minihv run`
// process fenced by those leases (blockdev/fence.h), the control server (cluster/rpc.h) that the
// `minihv cluster` CLI and the other nodes talk to, and failover: every tick it reads every node
// and VM lease, and starts the VMs that nobody holds any more, placed deterministically.
// Safety never depends on messages or clocks between nodes: a VM runs where its lease is held,
// and a node that cannot renew its leases stops its VMs before anyone may take them over.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "blockdev/extent_device.h"
#include "blockdev/fence.h"
#include "blockdev/lease_keeper.h"
#include "blockdev/volume.h"
#include "cluster/config.h"
#include "cluster/live_pids.h"
#include "cluster/metrics_server.h"
#include "cluster/node_images.h"
#include "cluster/node_metrics.h"
#include "cluster/observer.h"
#include "cluster/rpc.h"
#include "cluster/thread_group.h"
#include "cluster/vm_child.h"
#include "cluster/vm_phase.h"
#include "cluster/vm_user.h"
#include "cluster/watchdog.h"
#include "common/jsonl.h"
#include "common/keys.h"
#include "vmm/api.h"

namespace minihv::cluster {

struct NodeOptions {
  std::string name;
  std::string volume;
  std::string listen;                           // HOST:PORT of the control server
  std::vector<std::string> migration_networks;  // this node's addresses for migrations, preferred first
  std::string state_dir;                        // consoles, logs, control sockets of its VMs
  std::string self_exe;                         // the minihv binary to run VMs with
  std::string metrics;                          // HOST:PORT for Prometheus' GET /metrics ("": none)
  keys::Secret cluster_key;                     // from --key (the CLI reads and checks the file)
  // A VM's kernel and initrd must lie under one of these (symlinks and ".." resolved; node_images.h).
  std::vector<std::string> images;
  std::string watchdog;  // a watchdog device to arm ("": none; cluster/watchdog.h)
  std::string vm_user;   // USER or UID:GID its VM processes run as ("": root; cluster/vm_user.h)
};

// Wall-clock milliseconds, for reports only (decisions use the monotonic clock).
int64_t unix_ms();

// How a node stops: kStop stops its VMs (the cluster restarts the highly available ones
// elsewhere); kDrain first moves them live to other nodes, as `cluster drain` (SIGTERM).
enum class StopMode { kStop, kDrain };

class Node {
public:
  // Binds its control address, takes the node lease (refused while another live node of that
  // name holds it), joins the cluster on the volume and starts serving. Every check comes before
  // the configuration is written, and a start that fails after writing puts it back as it was.
  static Result<std::unique_ptr<Node>> start(const NodeOptions& options);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Runs until stop() (clean: VMs stopped, leases released; exit 0) or until the node lease is
  // lost (every VM killed at once; exit 1).
  int run();
  void stop(StopMode mode = StopMode::kStop);

  // The cluster key itself (each purpose derives its own key from it: keys::derive).
  const keys::Secret& cluster_key() const { return o_.cluster_key; }
  // A live move's key: derived from the cluster key and the move's id, which the destination mints
  // (prepare_incoming) and gives the source over the node channel; both ends derive the same key.
  Result<keys::Secret> move_key(const std::string& move_id) const;

  struct Local;  // a VM this node runs, starts or receives (node_local.h)

private:
  explicit Node(NodeOptions o) : o_(std::move(o)) {}

  // --- joining (node.cc) ---
  Status serve();          // binds --listen and each migration network (requests wait for ready_)
  Status join_cluster();   // node lease + configuration entry, rolled back on failure
  Status take_node_lease();
  void drain_before_stop();
  void stop_all_vms();  // run()'s clean stop: starters cancelled and joined, children stopped, leases back

  // --- the tick (node.cc) ---
  void tick();
  void observe_all();
  void handle_exits();
  void check_up();  // marks VMs that print no heartbeats up once their control socket answers
  // Keeps a VM's failure in the configuration, where every node's status shows it.
  void record_failure(const std::string& vm, const std::string& reason, int64_t generation);
  void start_orphans();
  void fence_pump();
  Status check_vm_user();
  std::string vm_dir(const std::string& vm) const;
  Status prepare_for_vm_user(Local& l, const std::string& incoming);
  void update_fence(Local& l);  // with mu_ held
  void check_write_deadlines(Local& l);  // with mu_ held
  void on_node_lease_lost(const std::string& why);
  void kill_all_children();
  void abandon_leases();  // fenced: nothing is written to a lease any more
  bool confirm_children_gone();  // fenced, VMs killed: true when proved gone before `dead`
  Status arm_watchdog();
  void pet_watchdog(std::span<const blockdev::Nanos> live_vm_grants);
  // Fenced, or about to be (the node lease may not be written: on_lost follows): no lease write.
  bool is_fenced() const;
  nlohmann::json status_json();
  std::string metrics_text();  // a scrape, on the metrics server's thread

  // --- VMs as child processes (node_vm.cc) ---
  std::shared_ptr<Local> new_local(const VmSpec& spec, VmPhase phase);
  // With mu_ held: what the node knows of `l`, and decide() on it with the phase change made.
  VmFacts facts_of(const Local& l);
  Decision decide_for(Local& l, const VmEvent& e);
  // A child that ended (handle_exits): restart it, or let it go as `d` says.
  void settle_end(const std::shared_ptr<Local>& l, const Decision& d);
  void let_go(Local& l, const Decision& d);  // turn off (if `d` says so), release, forget
  bool restart(Local& l, int status);
  void turn_off(const std::string& vm);  // the configuration says it stays off
  void start_vm(std::shared_ptr<Local> l, std::vector<blockdev::AcquireOptions> prior, const std::string& why);
  Result<std::vector<blockdev::LeaseSlot>> vm_lease_slots(Local& l);  // VM lease, then the disk's
  // Takes the VM's leases that `held` does not already have (by index of vm_lease_slots).
  Result<std::vector<std::unique_ptr<blockdev::Lease>>> acquire_vm_leases(
      Local& l, std::vector<blockdev::AcquireOptions> opts, std::vector<std::unique_ptr<blockdev::Lease>> held = {});
  void keep_leases(Local& l, std::vector<std::unique_ptr<blockdev::Lease>> leases);
  Status spawn(Local& l, const std::string& incoming);
  // What a VM's child did (cluster/vm_child.h), on the child's reader threads.
  void on_child(Local& l, const ChildEvent& e);
  Result<std::string> cpu_model_for(const VmSpec& spec);
  void release_vm(Local& l);
  void stop_child(Local& l);
  void forget(const std::string& name);
  // fork() on the node's spawner thread: a child's PR_SET_PDEATHSIG fires when the *thread* that
  // forked it ends, so children are forked by one that lives as long as the node. The pid joins
  // pids_ before anyone can reap it; returns it, or -errno (the spawner's).
  pid_t fork_on_spawner(const std::function<void()>& in_child);
  void spawner_loop();

  // --- requests (node_ops.cc) ---
  nlohmann::json handle(const nlohmann::json& req, const ApiServer::Progress& progress);
  nlohmann::json edit_vm(const nlohmann::json& req);
  // --- configuration edits with their checks (node_edit.cc) ---
  nlohmann::json add_vm(const nlohmann::json& req);
  nlohmann::json set_vm(const nlohmann::json& req);
  nlohmann::json remove_vm(const nlohmann::json& req);
  nlohmann::json remove_node(const nlohmann::json& req);
  nlohmann::json check_vm_reply(const nlohmann::json& req);
  // Reads the configuration now (not at the next tick): an edit checks, and then shows, the latest.
  Status refresh_config();
  // What `run` would check, on every live node: memory, CPU model, kernel and initrd.
  Status check_vm_everywhere(const VmSpec& vm);
  Status check_vm_on_peer(const VmSpec& vm, const std::string& name, const std::string& addr);
  nlohmann::json move(const nlohmann::json& req, const ApiServer::Progress& progress);
  nlohmann::json move_local(const std::string& vm, const std::string& to, const nlohmann::json& req,
                            const ApiServer::Progress& progress);
  class OutgoingMove;  // (node_move.h)
  nlohmann::json prepare_incoming(const nlohmann::json& req);
  nlohmann::json cancel_incoming(const nlohmann::json& req);
  nlohmann::json handoff(const nlohmann::json& req);
  void receive_vm(std::shared_ptr<Local> l);
  void hand_over_leases(Local& l, const std::string& to, const std::string& target_addr);
  nlohmann::json drain(const nlohmann::json& req, const ApiServer::Progress& progress);
  nlohmann::json cluster_status(const nlohmann::json& req);
  nlohmann::json validate(const nlohmann::json& req);
  nlohmann::json probe_reply(const nlohmann::json& req);
  std::string holder_of(const VmSpec& vm);
  // A disk's lease slot, from a cache of the disk table (reading all of it costs 256 reads).
  Result<blockdev::LeaseSlot> disk_lease_slot(const std::string& disk);
  // A disk's extent of the volume as a device of its own, for the VM that runs on it.
  Result<blockdev::ExtentDevice> extent_device(const std::string& disk);
  std::vector<std::string> live_nodes(bool include_paused);

  NodeOptions o_;
  RpcKey rpc_key_;         // every node RPC connection, served and made (rpc.h)
  ImageDirs images_;       // where VMs' kernels and initrds may come from (--images)
  std::optional<VmUser> vm_user_;  // --vm-user, resolved and checked at start
  NodeCounters counters_;  // before every thread that counts (the node lease's renewer, requests)
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<blockdev::Volume> vol_;       // node lease and configuration
  std::unique_ptr<blockdev::Volume> obs_vol_;   // every read (observer, configuration), on its own queue
  std::mutex disk_mu_;
  std::map<std::string, blockdev::LeaseSlot> disk_slots_;
  std::unique_ptr<LeaseObserver> observer_;
  std::unique_ptr<blockdev::LeaseKeeper> node_lease_;
  std::unique_ptr<jsonl::Server> server_;
  std::vector<std::unique_ptr<jsonl::Server>> migration_servers_;  // the same, on each migration network
  uint32_t host_id_ = 0;
  std::string uuid_;

  std::mutex mu_;                 // everything below
  std::condition_variable cv_;
  ClusterConfig config_;
  std::map<std::string, std::shared_ptr<Local>> locals_;
  // What the last tick saw: node name -> liveness, VM name -> holder node, dead-since stamps.
  std::map<std::string, Liveness> node_state_;
  std::map<std::string, int64_t> node_dead_since_ms_;
  std::map<std::string, std::string> vm_holder_;
  std::map<std::string, std::string> vm_errors_;  // why a VM was given up (shown by status)
  bool stopping_ = false;
  bool drain_on_stop_ = false;    // stop(StopMode::kDrain)
  std::atomic<bool> ready_{false};  // joined: requests are answered
  unsigned migrations_ = 0;       // outgoing live migrations now

  std::atomic<bool> fenced_{false};
  std::unique_ptr<Watchdog> watchdog_;  // --watchdog, once the node lease is held
  LivePids pids_;                 // every child, for an instant kill from a lease thread
  std::thread pump_;
  std::mutex spawn_mu_;
  std::condition_variable spawn_cv_;
  std::deque<std::packaged_task<pid_t()>> spawn_q_;
  bool spawn_quit_ = false;
  std::thread spawner_;
  // A VM's starter (start_vm, receive_vm) and stopper (handle_exits): they hold the VM's Local and
  // use the node; joined by ~Node once every VM is cancelled, before the spawner ends.
  ThreadGroup workers_;
};

}  // namespace minihv::cluster
