// migrate/receive_order.h — the order in which a destination accepts frames: a protocol that cannot
// be driven out of order. docs/migration-protocol.md §Destination states has the same table.
//
// Owns: the receiver's phases, which frame types each phase accepts and on which stream, the rule
// that round numbers go up on every stream, and the "protocol error: <FRAME> <when>" messages.
// Must not know: sockets, guest memory, KVM, or what HELLO/PAGES/STATE/VERIFY payloads contain (the
// caller decodes those and fails on its own when they are bad). Pure: it sees one frame at a time and
// reads nothing but the header and a DIRTY_ROUND_END's round number.
//
// The one legal sequence (stream 0 is the control stream):
//
//   HELLO                      stream 0; then nothing (but ABORT) until the destination has made
//                              the VM's memory ready and sent HELLO_REPLY (hello_answered())
//   PAGES | DIRTY_ROUND_END    any stream, any mix; on each stream the rounds go up and nothing
//                              follows that stream's round end flagged LAST
//   DIRTY_ROUND_END + LAST     stream 0; the transport's barrier delivers it after every other stream's
//   STATE ... STATE + LAST     stream 0; the StateAssembler checks that the LAST chunk completes the blob
//   VERIFY                     stream 0, optional, at most once
//   COMMIT                     stream 0; nothing may follow
//
// ABORT is accepted in every phase, on any stream, and ends the run. HELLO_REPLY, VERIFY_REPLY and
// ACK are the destination's own frames; STREAM_OPEN is consumed by Listener::accept. A rejected
// frame leaves the phase unchanged (the caller ends the migration anyway).
#pragma once

#include <array>
#include <cstdint>

#include "common/status.h"
#include "migrate/frames.h"

namespace minihv::migrate {

class ReceiveOrder {
public:
  // In protocol order: each phase accepts only what may follow the frames accepted before.
  enum class Phase {
    kAwaitHello,      // nothing accepted yet
    kAnsweringHello,  // HELLO accepted; the destination prepares guest memory and answers
    kRounds,          // HELLO answered (accepted): pages and round ends
    kAwaitState,      // the final round ended on stream 0: STATE chunks
    kStateDone,       // the STATE chunk flagged LAST accepted: VERIFY or COMMIT
    kVerified,        // VERIFY accepted: COMMIT
    kCommitted,       // COMMIT accepted: the run is over
    kAborted,         // ABORT accepted: the run is over
  };

  // `streams`: the session's stream count (1 ..= kMaxStreams); a frame on a higher index is refused.
  explicit ReceiveOrder(uint16_t streams = kMaxStreams);

  // Ok when `f` may come now (the phase moves on); otherwise "protocol error: <FRAME> <when>".
  // A DIRTY_ROUND_END whose payload does not decode fails with the decoder's message.
  Status accept(const FrameView& f);
  // The destination accepted the HELLO and may receive pages now (its guest memory is ready); it
  // calls this before it sends HELLO_REPLY, so no page can be accepted into memory not yet there.
  void hello_answered();
  Phase phase() const { return phase_; }

private:
  Status accept_hello();
  Status accept_pages(FrameType t, uint16_t stream) const;
  Status accept_round_end(const FrameView& f);
  Status accept_state(uint16_t flags);
  Status accept_verify();
  Status accept_commit();

  static constexpr int64_t kNoRound = -1;
  uint16_t streams_;
  Phase phase_ = Phase::kAwaitHello;
  std::array<int64_t, kMaxStreams> last_round_;  // per stream, kNoRound before its first round end
  std::array<bool, kMaxStreams> final_round_{};  // per stream: its round end flagged LAST arrived
};

}  // namespace minihv::migrate
