// migrate/frames.h — building frames, parsing a byte stream into validated frames, and the typed
// payloads of the control frames.
//
// Owns: the header encoding and checksum (protocol.h has the layout), the incremental parser and its
// typed errors, and encode/decode of every non-PAGES payload (PAGES records are codec.h's).
// Must not know: sockets, io_uring, guest memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "migrate/protocol.h"

namespace minihv::migrate {

struct FrameHeader {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  FrameType type = FrameType::kAbort;
  uint16_t flags = 0;
  uint16_t stream = 0;
  uint32_t payload_len = 0;
  uint64_t sequence = 0;
  uint64_t checksum = 0;
};
void encode_header(const FrameHeader& h, uint8_t out[kHeaderSize]);
FrameHeader decode_header(const uint8_t in[kHeaderSize]);  // no validation

// A whole frame, header + payload, contiguous and ready for send(). Built by FrameBuilder with the
// payload hash already computed; seal() stamps stream + sequence and the checksum (the transport
// does this, it owns the per-stream sequence).
// A byte vector whose resize() leaves new bytes uninitialised (pages are copied over them anyway).
template <typename T> struct NoInitAllocator : std::allocator<T> {
  template <typename U> struct rebind { using other = NoInitAllocator<U>; };
  template <typename U> void construct(U* p) noexcept { ::new (static_cast<void*>(p)) U; }
  template <typename U, typename... A> void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
using Bytes = std::vector<uint8_t, NoInitAllocator<uint8_t>>;

struct Frame {
  Bytes bytes;                 // kHeaderSize + payload_len
  uint64_t payload_hash = 0;   // XXH3_64bits(payload)
  uint32_t pages = 0;          // PAGES, RAW_PAGES: guest pages carried (the transport counts them per round)
  // RAW_PAGES: the pages sent after the frame, in guest memory (not owned: guest RAM outlives the
  // session); 4096 bytes each.
  std::vector<const uint8_t*> attachment;
  size_t wire_size() const { return bytes.size() + attachment.size() * kPageSize; }
  FrameType type() const;
  uint16_t flags() const;
  size_t payload_size() const { return bytes.size() - kHeaderSize; }
};
void seal(Frame& f, uint16_t stream, uint64_t sequence);

// Appends a payload little-endian, then finish() produces the Frame.
class FrameBuilder {
public:
  void begin(FrameType type, uint16_t flags = 0, size_t reserve = 0);
  void put_u8(uint8_t v);
  void put_u16(uint16_t v);
  void put_u32(uint32_t v);
  void put_u64(uint64_t v);
  void put_bytes(std::span<const uint8_t> b);
  void put_string(std::string_view s);  // u32 length + bytes
  // Grows the payload by n bytes and returns where they go (for writing data in place, e.g. lz4).
  uint8_t* extend(size_t n);
  void shrink_to(size_t payload_size);  // drops the tail after an in-place write used less
  uint8_t* payload_at(size_t offset);   // for patching an already written field
  size_t payload_size() const;
  void set_flags(uint16_t flags);
  Frame finish();  // computes payload_len and the payload hash; the builder is empty afterwards

private:
  Bytes buf_;
};

// A validated frame inside the parser's buffer. The payload span is valid until the next call to
// prepare()/feed() on that parser (in a Session: until the handler returns).
struct FrameView {
  FrameHeader header;
  std::span<const uint8_t> payload;
  size_t attachment_bytes = 0;  // RAW_PAGES: bytes following the frame (FrameParser: take them)
  FrameType type() const { return header.type; }
};

enum class FrameError {
  kNone,
  kBadMagic,
  kBadVersion,
  kUnknownType,
  kBadFlags,
  kTooLong,       // payload_len > kMaxPayload
  kBadChecksum,
  kBadStream,     // header's stream differs from the connection's
  kBadSequence,   // a frame lost, repeated or reordered
  kBadAttachment, // RAW_PAGES whose page count and payload length disagree
};
std::string_view frame_error_name(FrameError e);

// Incremental parser for one stream: feed bytes as they arrive (any split), take whole frames.
// Any corruption is sticky: next() keeps failing with the same error.
class FrameParser {
public:
  // `stream`: the stream index this connection carries, or kAnyStream to accept the header's.
  static constexpr int kAnyStream = -1;
  explicit FrameParser(int stream = kAnyStream, size_t capacity = 2 * (kHeaderSize + kMaxPayload));

  // Zero-copy receive: a writable area of at least `min` bytes (compacting if needed); after reading
  // into it, commit(n) the bytes received. Only prepare() moves buffered bytes: frames returned by
  // next() stay valid until it is called again. writable() may be 0 when frames are buffered but
  // not yet taken.
  std::span<uint8_t> prepare(size_t min = 1);
  void commit(size_t n);
  size_t writable() const;
  // Copying convenience for tests/fuzzers: returns how many bytes were taken (all, unless full).
  size_t feed(std::span<const uint8_t> bytes);

  // The next whole frame, std::nullopt when more bytes are needed, or an error (see error()).
  // Never moves memory, so earlier views stay valid. After a frame with an attachment (RAW_PAGES)
  // its attachment_bytes must be taken (below) before next() is called again.
  Result<std::optional<FrameView>> next();
  // How many more bytes complete the frame being received (its header first: a receiver that
  // reads no more than this never reads a RAW_PAGES attachment into the buffer); 0 when a whole
  // frame is buffered.
  size_t bytes_to_frame_end() const;
  // The attachment still to come, and the part of it already buffered here.
  size_t attachment_left() const { return attachment_left_; }
  std::span<const uint8_t> attachment_buffered() const;
  // Takes n bytes of the attachment from the buffer (after copying them where they go) ...
  void take_buffered_attachment(size_t n);
  // ... or notes n bytes of it received elsewhere (straight into guest memory); only once nothing
  // of the attachment is buffered.
  void attachment_received_elsewhere(size_t n);
  FrameError error() const { return error_; }
  size_t buffered() const { return end_ - begin_; }
  void set_stream(int stream) { stream_ = stream; }
  // Back to a fresh stream, keeping the buffer (fuzzers and reused parsers).
  void reset(int stream);
  uint64_t frames() const { return next_sequence_; }

private:
  Status fail(FrameError e, std::string detail);
  int stream_;
  Bytes buf_;
  size_t begin_ = 0, end_ = 0;
  uint64_t next_sequence_ = 0;
  size_t attachment_left_ = 0;
  FrameError error_ = FrameError::kNone;
  std::string error_message_;
};

// ---- typed payloads (layouts in protocol.h) ----
struct StreamOpen { uint64_t session_id = 0; uint16_t index = 0, count = 0; };
struct Hello { std::string vm_json, cpu_profile_json; };
struct HelloReply { bool accepted = false; std::string reason; };
struct RoundEnd { uint32_t round = 0, pages = 0; uint64_t remaining_bytes = 0; bool last = false; };
struct StateChunk { uint64_t offset = 0, total = 0; std::span<const uint8_t> data; bool last = false; };
struct RangeDigest { uint64_t gpa = 0, length = 0, digest = 0; };
struct Abort { std::string reason; };
struct RoundAck { uint32_t round = 0; };
// The destination's word that it runs the VM, and how it takes the disks' leases over: `owner`
// (its name in lease records) and one nonce for each volume disk whose lease it must take itself,
// in the VM's disk order. The source hands each such lease to it (Lease::hand_over) instead of
// releasing it, so the destination adopts it at once, with no claim to settle (blockdev/lease.h).
struct Ack { std::string owner; std::vector<uint64_t> nonces; };
struct Query { uint64_t session_id = 0; };
struct RawPagesHeader {
  uint32_t flags = 0;        // RawFlag
  uint64_t data_hash = 0;    // with RawFlag::kDataHashed: XXH3_64bits of the attachment
  std::vector<uint64_t> gpas;
};
struct QueryReply { uint64_t session_id = 0; CommitAnswer answer = CommitAnswer::kUnknown; };

Frame make_stream_open(const StreamOpen& m);
Frame make_hello(const Hello& m);
Frame make_hello_reply(const HelloReply& m);
Frame make_round_end(const RoundEnd& m);
Frame make_verify(std::span<const RangeDigest> ranges);
Frame make_verify_reply(std::span<const RangeDigest> mismatches);
Frame make_commit();
Frame make_ack(const Ack& m = {});
Frame make_abort(const Abort& m);
Frame make_round_ack(const RoundAck& m);
Frame make_query(const Query& m);
// RAW_PAGES for `pages` (gpa, host pointer of its 4096 bytes), 1 ..= kMaxRawPages of them; with
// `hash_data` the pages are hashed now (call it only while they cannot change: the VM is paused).
Frame make_raw_pages(std::span<const std::pair<uint64_t, const uint8_t*>> pages, bool hash_data);
// RAW_PAGES' data_hash: XXH3-64 over the pages' bytes in order (4096 each), as they are sent and
// as the receiver checks them in place.
uint64_t raw_pages_hash(std::span<const uint8_t* const> pages);
Frame make_query_reply(const QueryReply& m);
// Splits `blob` into STATE frames of at most kMaxStateChunk bytes (one empty frame for an empty blob).
std::vector<Frame> make_state_frames(std::span<const uint8_t> blob);

// Decoders check the frame type, every length and that nothing is left over.
Result<StreamOpen> parse_stream_open(const FrameView& f);
Result<Hello> parse_hello(const FrameView& f);
Result<HelloReply> parse_hello_reply(const FrameView& f);
Result<RoundEnd> parse_round_end(const FrameView& f);
Result<StateChunk> parse_state_chunk(const FrameView& f);
Result<std::vector<RangeDigest>> parse_verify(const FrameView& f);  // VERIFY or VERIFY_REPLY
Result<Abort> parse_abort(const FrameView& f);
Result<RoundAck> parse_round_ack(const FrameView& f);
Result<Ack> parse_ack(const FrameView& f);
Result<Query> parse_query(const FrameView& f);
Result<RawPagesHeader> parse_raw_pages(const FrameView& f);
Result<QueryReply> parse_query_reply(const FrameView& f);

// Reassembles STATE chunks: offsets must be contiguous from 0, totals equal, <= kMaxStateBytes.
class StateAssembler {
public:
  // Returns true once the chunk flagged last has arrived and the blob is whole.
  Result<bool> add(const FrameView& f);
  bool complete() const { return complete_; }
  std::vector<uint8_t> take() { return std::move(blob_); }

private:
  std::vector<uint8_t> blob_;
  uint64_t total_ = 0;
  bool started_ = false, complete_ = false;
};

}  // namespace minihv::migrate
