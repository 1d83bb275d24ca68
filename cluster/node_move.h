// cluster/node_move.h — (module-internal) one live move of a VM this node runs (node_move.cc).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/node_local.h"

namespace minihv::cluster {

// Holds the node's migration slot (with mu_ held at construction) until it is destroyed, which
// counts the outcome and lets a VM that did not leave run on here (decide(): kMigrationFailed).
class Node::OutgoingMove {
public:
  OutgoingMove(Node& n, std::shared_ptr<Local> l, std::string to, std::string target_addr, unsigned streams)
      : n_(n), l_(std::move(l)), vm_(l_->spec.name), to_(std::move(to)), addr_(std::move(target_addr)),
        streams_(streams) {
    n_.migrations_++;
    n_.counters_.migrations_started++;
    l_->phase = VmPhase::kMigrating;
  }
  ~OutgoingMove() {
    ++(moved_ ? n_.counters_.migrations_succeeded : n_.counters_.migrations_failed);
    std::lock_guard lock(n_.mu_);
    n_.migrations_--;
    if (!left_) (void)n_.decide_for(*l_, {VmEvent::Kind::kMigrationFailed});
  }
  OutgoingMove(const OutgoingMove&) = delete;
  OutgoingMove& operator=(const OutgoingMove&) = delete;

  nlohmann::json run(const nlohmann::json& req, const ApiServer::Progress& progress);

private:
  Result<nlohmann::json> migrate(const nlohmann::json& req, const ApiServer::Progress& progress);
  void wait_source_gone();
  int64_t wait_target_running();  // when the target took the leases (unix ms), or 0

  Node& n_;
  std::shared_ptr<Local> l_;
  const std::string vm_, to_, addr_;
  const unsigned streams_;
  bool left_ = false, moved_ = false;
};

}  // namespace minihv::cluster
