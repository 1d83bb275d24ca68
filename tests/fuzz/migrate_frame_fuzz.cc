// libFuzzer target for what a destination does with bytes from the network: the frame parser, the
// control-payload decoders, STATE reassembly, and the page-batch decoder writing into (fake) RAM.
//
// The first input byte picks the mode: even = the bytes are a stream (parsed in chunks whose sizes
// come from the second byte, each valid frame decoded); odd = the bytes are a PAGES payload given
// straight to the decoder (the checksum would otherwise hide the decoder from the fuzzer).
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "migrate/codec.h"
#include "migrate/frames.h"
#include "migrate/verify.h"

using namespace minihv;
using namespace minihv::migrate;

namespace {

constexpr uint64_t kRegionPages = 16;
constexpr uint64_t kHighBase = 1ull << 32;

struct Ram {
  std::vector<uint8_t> low = std::vector<uint8_t>(kRegionPages * kPageSize);
  std::vector<uint8_t> high = std::vector<uint8_t>(kRegionPages * kPageSize);
  std::vector<MemoryRegion> regions() { return {{0, low.size(), low.data()}, {kHighBase, high.size(), high.data()}}; }
};

void handle(const FrameView& v, std::span<const MemoryRegion> ram, StateAssembler& state) {
  switch (v.type()) {
    case FrameType::kPages: (void)decode_page_batch(v.payload, ram); break;
    case FrameType::kStreamOpen: (void)parse_stream_open(v); break;
    case FrameType::kHello: (void)parse_hello(v); break;
    case FrameType::kHelloReply: (void)parse_hello_reply(v); break;
    case FrameType::kDirtyRoundEnd: (void)parse_round_end(v); break;
    case FrameType::kState: (void)state.add(v); break;
    case FrameType::kVerify:
    case FrameType::kVerifyReply: {
      auto d = parse_verify(v);
      if (d) (void)compare_ram(ram, *d);
      break;
    }
    case FrameType::kAbort: (void)parse_abort(v); break;
    case FrameType::kCommit:
    case FrameType::kAck: (void)parse_ack(v); break;
    case FrameType::kRoundAck: (void)parse_round_ack(v); break;
    case FrameType::kQuery: (void)parse_query(v); break;
    case FrameType::kQueryReply: (void)parse_query_reply(v); break;
    case FrameType::kRawPages: {
      auto h = parse_raw_pages(v);
      if (h && place_raw_pages(*h, ram, nullptr)) (void)check_raw_pages(*h, ram);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static Ram* ram_storage = new Ram;
  auto ram = ram_storage->regions();
  std::span<const uint8_t> in(data + 2, size - 2);
  if (data[0] & 1) {
    (void)decode_page_batch(in, ram);
    return 0;
  }
  const size_t chunk = 1 + data[1] * 64u;
  static FrameParser* parser_storage = new FrameParser(FrameParser::kAnyStream, kHeaderSize + kMaxPayload);
  FrameParser& parser = *parser_storage;
  parser.reset(FrameParser::kAnyStream);
  StateAssembler state;
  for (size_t off = 0; off < in.size();) {
    size_t took = parser.feed(in.subspan(off, std::min(chunk, in.size() - off)));
    if (took == 0) break;
    off += took;
    while (true) {
      if (parser.attachment_left()) {  // RAW_PAGES: its pages follow; a receiver would place them
        parser.take_buffered_attachment(parser.attachment_buffered().size());
        if (parser.attachment_left()) break;  // more bytes needed
      }
      auto f = parser.next();
      if (!f || !*f) break;
      handle(**f, ram, state);
    }
    if (parser.error() != FrameError::kNone) break;
  }
  return 0;
}
