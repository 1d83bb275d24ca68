// migrate/in_doubt.h — settling a switchover whose ACK never came: did the destination commit?
//
// Owns: the QUERY conversation (one connection, one frame each way) on both sides, and the
// destination's witness that answers it for as long as the VM runs there.
// Must not know: guest memory, KVM, what the source does with the answer (migrate/source.cc: a
// committed session ends the VM here; anything else leaves it paused, "in doubt", unless a lease
// the destination needs before it may run is still held here).
//
// Source, after COMMIT without ACK:                Destination, after ACK:
//   auto a = ask_committed(targets, session, t);    auto w = CommitWitness::start(std::move(listener),
//   if (a.answer == CommitAnswer::kCommitted) ...                                  session_id);
//                                                    // answers until w is destroyed
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "common/status.h"
#include "migrate/transport.h"

namespace minihv::migrate {

struct Asked {
  CommitAnswer answer = CommitAnswer::kUnknown;
  std::string detail;  // who answered what, or why nobody could (for the user)
};

// Asks each target in order whether it committed `session`; stops at the first that says so.
// `per_target` bounds connecting and waiting for the answer. Never fails: an unreachable target
// is an answer of kUnknown with the reason in `detail`.
// `psk`: the session's channel key (TransportOptions::psk); nullopt: plain TCP.
Asked ask_committed(std::span<const Endpoint> targets, uint64_t session, std::chrono::milliseconds per_target,
                    const std::optional<tls::Psk>& psk);

// The destination's proof of COMMIT: answers QUERY(session) with kCommitted on the migration
// listener, one connection at a time (each through its TLS handshake with `psk` unless nullopt,
// within kQueryReadTimeout), from a thread it owns, until destroyed.
class CommitWitness {
public:
  // `silent_for`: answer nothing for this long first (a test's network cut; 0 in production).
  // `finished`: the migration's session, closed by the witness's thread first (its streams' and
  // relays' teardown takes a few hundred microseconds the guest need not wait for).
  static std::unique_ptr<CommitWitness> start(Listener listener, uint64_t session, std::optional<tls::Psk> psk,
                                              std::chrono::milliseconds silent_for = {},
                                              std::unique_ptr<Session> finished = nullptr);
  ~CommitWitness();
  CommitWitness(const CommitWitness&) = delete;
  CommitWitness& operator=(const CommitWitness&) = delete;

private:
  CommitWitness(Listener listener, uint64_t session, std::optional<tls::Psk> psk)
      : listener_(std::move(listener)), session_(session), psk_(std::move(psk)) {}
  void serve(std::chrono::milliseconds silent_for, std::unique_ptr<Session> finished);
  void answer(int fd);

  Listener listener_;
  const uint64_t session_;
  const std::optional<tls::Psk> psk_;
  std::atomic<bool> stop_{false};
  bool complained_ = false;  // the thread's own: an accept error was logged
  std::thread thread_;  // owned: joined by the destructor
};

}  // namespace minihv::migrate
