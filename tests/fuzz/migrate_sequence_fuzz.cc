// libFuzzer target for the order of frames a destination accepts: whole sequences of frames go
// through ReceiveOrder and, when it accepts them, the same decoders DestinationRun uses (page
// batches into fake RAM with ZeroPages, STATE reassembly, VERIFY against RAM). Never a crash, and:
//  - a refused frame is a "protocol error: ..." (or an unreadable DIRTY_ROUND_END) and leaves the phase;
//  - no PAGES is accepted before the HELLO is answered, nor after the final round end on stream 0;
//  - COMMIT is accepted only after HELLO, the final round end on stream 0 and a complete STATE blob;
//  - after COMMIT nothing but ABORT is accepted.
//
// Input: steps of 4 bytes + payload, until the input runs out:
//   type (1 + b % kMaxFrameType) | stream (b % (kStreams + 1): the last one is outside the session) |
//   mode (bit 0: flag LAST; bit 1: build a well-formed payload from the step's bytes) | n | n bytes
// Well-formed payloads let the fuzzer reach the late phases; raw ones reach the decoders' errors.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "migrate/codec.h"
#include "migrate/frames.h"
#include "migrate/receive_order.h"
#include "migrate/verify.h"

using namespace minihv;
using namespace minihv::migrate;

namespace {

constexpr uint16_t kStreams = 2;
constexpr uint64_t kRegionPages = 16;
constexpr uint64_t kHighBase = 1ull << 32;
constexpr size_t kStepHeader = 4;
constexpr uint8_t kModeLast = 1u << 0;
constexpr uint8_t kModeWellFormed = 1u << 1;
constexpr uint64_t kMaxFuzzState = 512;  // STATE blob size the well-formed chunks aim at, at most

#define CHECK(cond)                 \
  do {                              \
    if (!(cond)) __builtin_trap();  \
  } while (0)

struct Ram {
  std::vector<uint8_t> low = std::vector<uint8_t>(kRegionPages * kPageSize);
  std::vector<uint8_t> high = std::vector<uint8_t>(kRegionPages * kPageSize);
  std::vector<MemoryRegion> regions() { return {{0, low.size(), low.data()}, {kHighBase, high.size(), high.data()}}; }
  void discard() {  // as GuestMemory::discard leaves it: every page zero
    std::memset(low.data(), 0, low.size());
    std::memset(high.data(), 0, high.size());
  }
};

struct Step {
  FrameType type;
  uint16_t stream;
  uint8_t mode;
  std::span<const uint8_t> bytes;
  uint8_t byte(size_t i) const { return i < bytes.size() ? bytes[i] : 0; }
};

// One zero run and, sometimes, a raw page, at pages of the low region picked by the step's bytes.
Frame well_formed_pages(const Step& s) {
  FrameBuilder b;
  b.begin(FrameType::kPages);
  b.put_u64((s.byte(0) % kRegionPages) * kPageSize);
  b.put_u8(static_cast<uint8_t>(PageKind::kZero));
  b.put_u8(0);
  b.put_u16(static_cast<uint16_t>(1 + s.byte(1) % 4));
  if (s.byte(2) & 1) {
    b.put_u64((s.byte(3) % kRegionPages) * kPageSize);
    b.put_u8(static_cast<uint8_t>(PageKind::kRaw));
    b.put_u8(0);
    b.put_u16(static_cast<uint16_t>(kPageSize));
    std::memset(b.extend(kPageSize), s.byte(4), kPageSize);
  }
  return b.finish();
}

// The next chunk of a blob of `total` bytes of which `have` arrived; LAST when it completes it.
Frame well_formed_state(const Step& s, uint64_t have, uint64_t total) {
  const uint64_t n = std::min<uint64_t>(s.bytes.size(), total > have ? total - have : 0);
  FrameBuilder b;
  b.begin(FrameType::kState, have + n == total ? FrameFlag::kLast : 0);
  b.put_u64(have);
  b.put_u64(total);
  b.put_bytes(s.bytes.first(n));
  return b.finish();
}

class Run {
public:
  explicit Run(std::span<const MemoryRegion> ram) : ram_(ram), zero_(ram, true) {}

  // False when the destination would have ended the migration.
  bool step(const Step& s) {
    Frame built = s.mode & kModeWellFormed ? well_formed(s) : Frame{};
    FrameView v;
    if (s.mode & kModeWellFormed) {
      v.header = decode_header(built.bytes.data());
      v.payload = {built.bytes.data() + kHeaderSize, built.payload_size()};
    } else {
      v.header.type = s.type;
      v.header.flags = s.mode & kModeLast ? FrameFlag::kLast : 0;
      v.header.payload_len = static_cast<uint32_t>(s.bytes.size());
      v.payload = s.bytes;
    }
    v.header.stream = s.stream;
    const ReceiveOrder::Phase before = order_.phase();
    Status ok = order_.accept(v);
    if (!ok) {
      CHECK(ok.message().starts_with("protocol error: " + std::string(frame_type_name(s.type))) ||
            s.type == FrameType::kDirtyRoundEnd);
      CHECK(order_.phase() == before);
      return true;  // as if the frame never came: the rest of the sequence still tests the order
    }
    if (committed_) CHECK(s.type == FrameType::kAbort);
    return consume(v);
  }

private:
  Frame well_formed(const Step& s) {
    switch (s.type) {
      case FrameType::kStreamOpen: return make_stream_open({1, s.stream, kStreams});
      case FrameType::kHello: return make_hello({"{}", "null"});
      case FrameType::kHelloReply: return make_hello_reply({true, ""});
      case FrameType::kPages: return well_formed_pages(s);
      case FrameType::kDirtyRoundEnd: return make_round_end({s.byte(0), 0, 0, (s.mode & kModeLast) != 0});
      case FrameType::kState: {
        if (state_total_ == 0) state_total_ = 1 + s.byte(0) % kMaxFuzzState;
        return well_formed_state(s, state_have_, state_total_);
      }
      case FrameType::kVerify: {
        std::vector<RangeDigest> ranges;
        if (s.byte(0) & 1) ranges.push_back({0, kPageSize, s.byte(1)});
        return make_verify(ranges);
      }
      case FrameType::kVerifyReply: return make_verify_reply({});
      case FrameType::kCommit: return make_commit();
      case FrameType::kAck: return make_ack();
      case FrameType::kAbort: return make_abort({"fuzz"});
      default: break;  // a type added later: its bytes as they are
    }
    FrameBuilder b;
    b.begin(s.type, s.mode & kModeLast ? FrameFlag::kLast : 0);
    b.put_bytes(s.bytes);
    return b.finish();
  }

  // What DestinationRun does with an accepted frame; false when that ends the migration.
  bool consume(const FrameView& v) {
    switch (v.type()) {
      case FrameType::kHello: {  // answered as DestinationRun answers it: memory ready, then pages
        const bool ok = parse_hello(v).is_ok();
        if (ok) order_.hello_answered();
        hello_ = ok;
        return ok;
      }
      case FrameType::kPages:
        CHECK(hello_ && !final_round_);
        return decode_page_batch(v.payload, ram_, &zero_, {v.header.stream, kStreams}).is_ok();
      case FrameType::kRawPages: {  // where its pages would go (the transport then receives them)
        CHECK(hello_ && !final_round_);
        auto h = parse_raw_pages(v);
        return h.is_ok() && place_raw_pages(*h, ram_, &zero_, {v.header.stream, kStreams}).is_ok();
      }
      case FrameType::kDirtyRoundEnd: {
        auto r = parse_round_end(v);
        CHECK(r.is_ok() && hello_ && !final_round_);
        if (v.header.stream == kControlStream && r->last) final_round_ = true;
        return true;
      }
      case FrameType::kState: {
        CHECK(final_round_);
        auto done = state_.add(v);
        if (!done) return false;
        state_have_ += v.payload.size() - 2 * sizeof(uint64_t);
        return true;
      }
      case FrameType::kVerify: {
        CHECK(state_.complete());
        auto expected = parse_verify(v);
        if (!expected) return false;
        auto bad = compare_ram(ram_, *expected);
        return bad.is_ok() && bad->empty();
      }
      case FrameType::kCommit:
        CHECK(hello_ && final_round_ && state_.complete());
        committed_ = true;
        return true;
      case FrameType::kAbort: return false;
      default: CHECK(false);  // the destination's own frames and STREAM_OPEN are never accepted
    }
    return false;
  }

  std::span<const MemoryRegion> ram_;
  ZeroPages zero_;
  ReceiveOrder order_{kStreams};
  StateAssembler state_;
  uint64_t state_have_ = 0, state_total_ = 0;
  bool hello_ = false, final_round_ = false, committed_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Ram* ram_storage = new Ram;
  ram_storage->discard();
  const std::vector<MemoryRegion> ram = ram_storage->regions();
  Run run(ram);
  std::span<const uint8_t> in(data, size);
  while (in.size() >= kStepHeader) {
    const size_t n = std::min<size_t>(in[3], in.size() - kStepHeader);
    const Step s{static_cast<FrameType>(kMinFrameType + in[0] % kMaxFrameType),
                 static_cast<uint16_t>(in[1] % (kStreams + 1)), in[2], in.subspan(kStepHeader, n)};
    in = in.subspan(kStepHeader + n);
    if (!run.step(s)) break;
  }
  return 0;
}
