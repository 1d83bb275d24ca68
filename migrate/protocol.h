// migrate/protocol.h — the migration wire protocol, in one file. docs/migration-protocol.md is the
// prose version (sequence diagram, receiver states); this header is the truth.
//
// Owns: the frame header layout, frame types and flags, payload size limits, the stream-affinity rule
// that orders pages, and the page-record layout inside PAGES payloads.
// Must not know: sockets, io_uring, KVM, guest memory. Everything here is a constant or a pure function.
//
// Byte order: every integer on the wire is little-endian. A frame is
//
//   FrameHeader (32 bytes)  |  payload (payload_len bytes, 0 ..= kMaxPayload)
//
//   off size field
//    0   4   magic         kMagic ("MHVM" in memory order)
//    4   2   version       kVersion; a peer with another version is refused, never guessed at
//    6   2   type          FrameType
//    8   2   flags         FrameFlag bits; unknown bits must be zero
//   10   2   stream        index of the TCP stream the frame was sent on (0 .. streams-1)
//   12   4   payload_len   bytes following the header, <= kMaxPayload
//   16   8   sequence      per-stream counter, 0 for the first frame on a stream, +1 per frame
//   24   8   checksum      XXH3_64bits_withSeed(header bytes [0, 24), 24, XXH3_64bits(payload))
//
// The checksum covers every header field and the payload: the payload hash is computed once when a
// frame is built, the header part when the transport stamps stream and sequence (frames.h: seal()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace minihv::migrate {

inline constexpr uint32_t kMagic = 0x4D56484D;  // bytes 'M' 'H' 'V' 'M' on the wire
// 2: ROUND_ACK; 3: QUERY / QUERY_REPLY; 4: RAW_PAGES; 5: ROUND_ACK of the last round (VM with NICs)
inline constexpr uint16_t kVersion = 6;
inline constexpr size_t kHeaderSize = 32;

// Big enough for a PAGES batch of kMaxPagesPerBatch raw pages plus record headers, and a STATE chunk.
inline constexpr size_t kMaxPayload = 2u << 20;
inline constexpr size_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;
// A PAGES frame is closed once its payload reaches this many bytes (the encoder's target).
inline constexpr size_t kTargetBatchBytes = 1u << 20;
// STATE blobs are split into chunks of at most this many bytes; the whole blob is capped.
inline constexpr size_t kMaxStateChunk = 1u << 20;
inline constexpr uint64_t kMaxStateBytes = 256ull << 20;
// Strings in payloads (reasons, JSON) are capped so a bad length cannot ask for gigabytes.
inline constexpr size_t kMaxStringBytes = 1u << 20;
inline constexpr uint16_t kMaxStreams = 16;
// ACK: a lease owner's name (blockdev's records hold 64 bytes) and a nonce per volume disk.
inline constexpr size_t kMaxLeaseOwnerBytes = 256;
inline constexpr uint32_t kMaxHandedLeases = 64;

enum class FrameType : uint16_t {
  kStreamOpen = 1,     // first frame on every connection: session id, stream index, stream count
  kHello = 2,          // source -> dest, stream 0: VM description JSON + source CPU profile JSON
  kHelloReply = 3,     // dest -> source, stream 0: accepted, or refused with a reason
  kPages = 4,          // source -> dest, any stream: a batch of page records (below)
  kDirtyRoundEnd = 5,  // source -> dest, every stream: "round r is complete on this stream"
  kState = 6,          // source -> dest, stream 0: one chunk of the opaque machine-state blob
  kVerify = 7,         // source -> dest, stream 0: xxh3 digests of memory ranges
  kVerifyReply = 8,    // dest -> source, stream 0: which ranges differ
  kCommit = 9,         // source -> dest, stream 0: "everything is sent, please confirm"
  kAck = 10,           // dest -> source, stream 0: "I have it all and will run it"
  kAbort = 11,         // either way, stream 0 (any stream is accepted): give up, with a reason
  kRoundAck = 12,      // dest -> source, stream 0: every page of round r is in guest memory (the
                       // last round's only for a VM with NICs, once they announced the guest)
  kQuery = 13,         // source -> dest, on a connection of its own: "did session S commit?"
  kQueryReply = 14,    // dest -> source, on that connection: the answer
  kRawPages = 15,      // source -> dest, stream_for_page: raw pages, their bytes after the frame
};
inline constexpr uint16_t kMinFrameType = 1;
inline constexpr uint16_t kMaxFrameType = 15;
inline constexpr bool is_known_frame_type(uint16_t t) { return t >= kMinFrameType && t <= kMaxFrameType; }
std::string_view frame_type_name(FrameType t);

namespace FrameFlag {
// kState: this chunk is the last one of the blob. kDirtyRoundEnd: the final round (switchover):
// after it no PAGES frame follows on that stream.
inline constexpr uint16_t kLast = 1u << 0;
inline constexpr uint16_t kKnownMask = kLast;
}  // namespace FrameFlag

// Control frames travel on stream 0; the destination answers on stream 0 of the same connection.
inline constexpr uint16_t kControlStream = 0;

// Page ordering. A page always travels on the same stream: stream_for_page(gpa). TCP keeps one stream
// in order, so a newer copy of a page can never overtake an older one. Pages are grouped in chunks
// of 2^kAffinityShift bytes so that runs of neighbouring pages (zero runs) stay on one stream.
// Between rounds the receiver keeps a barrier: a kDirtyRoundEnd(r) on stream 0 is delivered only after
// every other stream has delivered its kDirtyRoundEnd(r), and nothing after it on stream 0 (STATE,
// VERIFY, COMMIT) is delivered before that (see transport.h).
inline constexpr unsigned kAffinityShift = 18;  // 256 KiB = 64 pages
inline constexpr uint16_t stream_for_page(uint64_t gpa, uint16_t streams) {
  return streams <= 1 ? 0 : static_cast<uint16_t>((gpa >> kAffinityShift) % streams);
}
// Whether `pages` pages from `gpa` may come on `stream` of `streams`: all of them belong to it. With
// more than one stream a run of pages stays inside one chunk (the next chunk is another stream's).
// The receiver checks this, so each stream's thread writes only its own pages.
inline constexpr bool stream_owns(uint64_t gpa, uint64_t pages, uint16_t stream, uint16_t streams) {
  if (streams <= 1) return stream == 0;
  if (pages == 0 || pages > (uint64_t{1} << (kAffinityShift - kPageShift))) return false;
  const uint64_t last = gpa + ((pages - 1) << kPageShift);
  return last >= gpa && (gpa >> kAffinityShift) == (last >> kAffinityShift) && stream_for_page(gpa, streams) == stream;
}

// PAGES payload: a sequence of records, each a 12-byte PageRecordHeader followed by `length` bytes.
//
//   off size field
//    0   8   gpa     guest-physical address of the first page, 4 KiB aligned
//    8   1   kind    PageKind
//    9   1   reserved, 0
//   10   2   length  kZero: number of consecutive zero pages (1 ..= kMaxZeroRun), no data follows
//                    kRaw:  4096, then the page
//                    kLz4:  1 ..= kLz4MaxBytes, then an LZ4 block that decodes to exactly 4096 bytes
//
// A page whose xxh3 equals the one last sent for it is "unchanged" and has no record at all.
inline constexpr size_t kRecordHeaderSize = 12;
enum class PageKind : uint8_t { kZero = 1, kRaw = 2, kLz4 = 3 };
// LZ4 is used only when it shrinks a page to at most 3/4 of its size; otherwise the page goes raw.
inline constexpr size_t kLz4MaxBytes = kPageSize * 3 / 4;
inline constexpr uint16_t kMaxZeroRun = 0xFFFF;

// What a destination answers to QUERY(session). Only kCommitted is proof of anything: a process
// that does not know the session may be another one on the same port.
enum class CommitAnswer : uint8_t {
  kUnknown = 0,    // this process did not commit that session (or never saw it)
  kCommitted = 1,  // this process took COMMIT for that session: it runs (or is about to run) the VM
};

// RAW_PAGES: raw pages without copying them on either side. The payload holds where they go, the
// pages' bytes follow the frame on the stream (its *attachment*, outside payload_len):
//
//   payload:    u32 count (1 ..= kMaxRawPages) | u32 flags (RawFlag) | u64 data_hash
//               | count x u64 gpa (4 KiB aligned)                        (payload_len = 16 + 8 count)
//   attachment: count x 4096 bytes, page i's contents for gpa i
//
// The frame checksum covers the header and the payload, so where every page goes is always
// checked. The pages' bytes are covered only with RawFlag::kDataHashed: data_hash = XXH3_64bits of
// the attachment. The source sets it in the paused final round; before it, a page may change while
// it is being sent (it is then dirty and sent again next round), and --verify is the end-to-end proof.
// The source never sends a page it has hashed for the "unchanged" check this way while the guest
// runs (the digest could describe other bytes than those sent).
inline constexpr uint32_t kMaxRawPages = 256;
inline constexpr size_t kRawPagesFixedBytes = 16;
namespace RawFlag {
inline constexpr uint32_t kDataHashed = 1u << 0;
inline constexpr uint32_t kKnownMask = kDataHashed;
}  // namespace RawFlag
//
// STATE payload:        u64 offset | u64 total | bytes (offset + len <= total <= kMaxStateBytes)
// DIRTY_ROUND_END:      u32 round | u32 pages (PAGES records' page count on this stream this round)
//                       | u64 remaining_bytes (source's estimate, for progress)
// STREAM_OPEN:          u64 session_id | u16 index | u16 count
// HELLO:                u32 len | vm JSON | u32 len | cpu profile JSON
// HELLO_REPLY:          u8 accepted | u32 len | reason
// VERIFY:               u32 n | n x { u64 gpa | u64 length | u64 xxh3 }
// VERIFY_REPLY:         u32 n | n x { u64 gpa | u64 length | u64 xxh3 as the destination computed it }
//                       (the ranges that differ; n == 0 means everything matched)
// ROUND_ACK:            u32 round (sent when stream 0's DIRTY_ROUND_END(round) is delivered, i.e.
//                       after the barrier: every page of the round decoded; not for the final round,
//                       which COMMIT/ACK close). The source waits for it before its next harvest, so
//                       the destination's decode backlog never spills into the pause.
// QUERY:                u64 session_id (the first and only frame the source sends on a connection
//                       of its own, stream 0, sequence 0, when the ACK after COMMIT never came)
// QUERY_REPLY:          u64 session_id (the one asked about, echoed) | u8 CommitAnswer (the
//                       destination's only frame on that connection)
// ACK:                  u32 len | owner | u32 n | n x u64 nonce (the destination's lease owner name and
//                       a nonce per volume disk it must take the lease of, in disk order; the source
//                       hands each lease over with it. n = 0: nothing to hand over, release as before)
// COMMIT:               empty
// ABORT:                u32 len | reason
// The structs and their encoders/decoders are in frames.h.

}  // namespace minihv::migrate
