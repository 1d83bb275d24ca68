#include "migrate/receive_order.h"

#include <string>

namespace minihv::migrate {

namespace {

Status violation(FrameType t, const std::string& when) {
  return Status::error("protocol error: " + std::string(frame_type_name(t)) + " " + when);
}

// Frames only the destination sends; the source has no business sending them back.
bool sent_by_destination(FrameType t) {
  return t == FrameType::kHelloReply || t == FrameType::kVerifyReply || t == FrameType::kAck ||
         t == FrameType::kRoundAck || t == FrameType::kQueryReply;
}

// Frames that belong to the conversation, not to page transfer: stream 0 only.
bool control_only(FrameType t) {
  return t == FrameType::kHello || t == FrameType::kState || t == FrameType::kVerify || t == FrameType::kCommit;
}

}  // namespace

ReceiveOrder::ReceiveOrder(uint16_t streams) : streams_(streams) { last_round_.fill(kNoRound); }

Status ReceiveOrder::accept(const FrameView& f) {
  const FrameType t = f.type();
  const uint16_t stream = f.header.stream;
  if (stream >= streams_ || stream >= kMaxStreams)
    return violation(t, "on stream " + std::to_string(stream) + " of a " + std::to_string(streams_) + "-stream session");
  if (t == FrameType::kAbort) {
    phase_ = Phase::kAborted;
    return Status::ok();
  }
  if (phase_ == Phase::kCommitted) return violation(t, "after COMMIT");
  if (phase_ == Phase::kAborted) return violation(t, "after ABORT");
  if (sent_by_destination(t)) return violation(t, "sent to the destination (only the destination sends it)");
  if (t == FrameType::kStreamOpen) return violation(t, "after the streams were opened");
  if (t == FrameType::kQuery) return violation(t, "inside a migration session (it opens a connection of its own)");
  if (control_only(t) && stream != kControlStream)
    return violation(t, "on stream " + std::to_string(stream) + " (only the control stream 0 carries it)");
  if (phase_ == Phase::kAwaitHello && t != FrameType::kHello) return violation(t, "before HELLO");
  if (phase_ == Phase::kAnsweringHello && t != FrameType::kHello) return violation(t, "before HELLO_REPLY");
  switch (t) {
    case FrameType::kHello: return accept_hello();
    case FrameType::kPages:
    case FrameType::kRawPages: return accept_pages(t, stream);
    case FrameType::kDirtyRoundEnd: return accept_round_end(f);
    case FrameType::kState: return accept_state(f.header.flags);
    case FrameType::kVerify: return accept_verify();
    case FrameType::kCommit: return accept_commit();
    default: return violation(t, "is not a frame the destination accepts");
  }
}

Status ReceiveOrder::accept_hello() {
  if (phase_ != Phase::kAwaitHello) return violation(FrameType::kHello, "a second time");
  phase_ = Phase::kAnsweringHello;
  return Status::ok();
}

void ReceiveOrder::hello_answered() {
  if (phase_ == Phase::kAnsweringHello) phase_ = Phase::kRounds;
}

Status ReceiveOrder::accept_pages(FrameType t, uint16_t stream) const {
  if (phase_ > Phase::kRounds) return violation(t, "after the final round");
  if (final_round_[stream])
    return violation(t, "on stream " + std::to_string(stream) + " after its final round");
  return Status::ok();
}

Status ReceiveOrder::accept_round_end(const FrameView& f) {
  const uint16_t stream = f.header.stream;
  if (phase_ > Phase::kRounds) return violation(FrameType::kDirtyRoundEnd, "after the final round");
  auto r = parse_round_end(f);
  if (!r) return r.status();
  const std::string on_stream = "on stream " + std::to_string(stream);
  if (final_round_[stream]) return violation(FrameType::kDirtyRoundEnd, on_stream + " after its final round");
  // Strictly up: a repeated round would let the transport's barrier (round' >= round) pass early.
  if (last_round_[stream] != kNoRound && r->round <= last_round_[stream])
    return violation(FrameType::kDirtyRoundEnd, "round " + std::to_string(r->round) + " after round " +
                                                    std::to_string(last_round_[stream]) + " " + on_stream +
                                                    " (rounds must go up)");
  last_round_[stream] = r->round;
  final_round_[stream] = r->last;
  if (stream == kControlStream && r->last) phase_ = Phase::kAwaitState;
  return Status::ok();
}

Status ReceiveOrder::accept_state(uint16_t flags) {
  if (phase_ < Phase::kAwaitState) return violation(FrameType::kState, "before the final round");
  if (phase_ > Phase::kAwaitState) return violation(FrameType::kState, "after the complete machine state");
  if (flags & FrameFlag::kLast) phase_ = Phase::kStateDone;
  return Status::ok();
}

Status ReceiveOrder::accept_verify() {
  if (phase_ < Phase::kStateDone) return violation(FrameType::kVerify, "before the complete machine state");
  if (phase_ == Phase::kVerified) return violation(FrameType::kVerify, "a second time");
  phase_ = Phase::kVerified;
  return Status::ok();
}

Status ReceiveOrder::accept_commit() {
  if (phase_ < Phase::kStateDone) return violation(FrameType::kCommit, "before the complete machine state");
  phase_ = Phase::kCommitted;
  return Status::ok();
}

}  // namespace minihv::migrate
