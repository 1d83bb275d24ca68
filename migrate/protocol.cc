#include "migrate/protocol.h"

namespace minihv::migrate {

std::string_view frame_type_name(FrameType t) {
  switch (t) {
    case FrameType::kStreamOpen: return "STREAM_OPEN";
    case FrameType::kHello: return "HELLO";
    case FrameType::kHelloReply: return "HELLO_REPLY";
    case FrameType::kPages: return "PAGES";
    case FrameType::kDirtyRoundEnd: return "DIRTY_ROUND_END";
    case FrameType::kState: return "STATE";
    case FrameType::kVerify: return "VERIFY";
    case FrameType::kVerifyReply: return "VERIFY_REPLY";
    case FrameType::kCommit: return "COMMIT";
    case FrameType::kAck: return "ACK";
    case FrameType::kRoundAck: return "ROUND_ACK";
    case FrameType::kAbort: return "ABORT";
    case FrameType::kQuery: return "QUERY";
    case FrameType::kQueryReply: return "QUERY_REPLY";
    case FrameType::kRawPages: return "RAW_PAGES";
  }
  return "UNKNOWN";
}

}  // namespace minihv::migrate
