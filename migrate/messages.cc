// Encoders and decoders of the control payloads (layouts in protocol.h), and STATE reassembly.
#include <xxhash.h>

#include <algorithm>

#include "migrate/frames.h"
#include "migrate/wire.h"

namespace minihv::migrate {

namespace {

Status expect_type(const FrameView& f, FrameType want) {
  if (f.type() == want) return Status::ok();
  return Status::error("expected " + std::string(frame_type_name(want)) + ", got " +
                       std::string(frame_type_name(f.type())));
}

template <typename T> Result<T> finish(const wire::Reader& r, T value) {
  MINIHV_TRY(r.finish());
  return value;
}

Frame make_ranges(FrameType type, std::span<const RangeDigest> ranges) {
  FrameBuilder b;
  b.begin(type, 0, 4 + ranges.size() * 24);
  b.put_u32(static_cast<uint32_t>(ranges.size()));
  for (const auto& r : ranges) {
    b.put_u64(r.gpa);
    b.put_u64(r.length);
    b.put_u64(r.digest);
  }
  return b.finish();
}

}  // namespace

Frame make_stream_open(const StreamOpen& m) {
  FrameBuilder b;
  b.begin(FrameType::kStreamOpen);
  b.put_u64(m.session_id);
  b.put_u16(m.index);
  b.put_u16(m.count);
  return b.finish();
}

Frame make_hello(const Hello& m) {
  FrameBuilder b;
  b.begin(FrameType::kHello, 0, 8 + m.vm_json.size() + m.cpu_profile_json.size());
  b.put_string(m.vm_json);
  b.put_string(m.cpu_profile_json);
  return b.finish();
}

Frame make_hello_reply(const HelloReply& m) {
  FrameBuilder b;
  b.begin(FrameType::kHelloReply);
  b.put_u8(m.accepted ? 1 : 0);
  b.put_string(m.reason);
  return b.finish();
}

Frame make_round_end(const RoundEnd& m) {
  FrameBuilder b;
  b.begin(FrameType::kDirtyRoundEnd, m.last ? FrameFlag::kLast : 0);
  b.put_u32(m.round);
  b.put_u32(m.pages);
  b.put_u64(m.remaining_bytes);
  return b.finish();
}

Frame make_verify(std::span<const RangeDigest> ranges) { return make_ranges(FrameType::kVerify, ranges); }
Frame make_verify_reply(std::span<const RangeDigest> mismatches) {
  return make_ranges(FrameType::kVerifyReply, mismatches);
}

Frame make_commit() {
  FrameBuilder b;
  b.begin(FrameType::kCommit);
  return b.finish();
}

Frame make_ack(const Ack& m) {
  FrameBuilder b;
  b.begin(FrameType::kAck);
  b.put_string(m.owner);
  b.put_u32(static_cast<uint32_t>(m.nonces.size()));
  for (uint64_t n : m.nonces) b.put_u64(n);
  return b.finish();
}

Frame make_round_ack(const RoundAck& m) {
  FrameBuilder b;
  b.begin(FrameType::kRoundAck);
  b.put_u32(m.round);
  return b.finish();
}

Frame make_query(const Query& m) {
  FrameBuilder b;
  b.begin(FrameType::kQuery);
  b.put_u64(m.session_id);
  return b.finish();
}

uint64_t raw_pages_hash(std::span<const uint8_t* const> pages) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  for (const uint8_t* p : pages) XXH3_64bits_update(st, p, kPageSize);
  const uint64_t hash = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return hash;
}

Frame make_raw_pages(std::span<const std::pair<uint64_t, const uint8_t*>> pages, bool hash_data) {
  std::vector<const uint8_t*> hosts;
  for (const auto& [gpa, host] : pages) hosts.push_back(host);
  FrameBuilder b;
  b.begin(FrameType::kRawPages, 0, kRawPagesFixedBytes + 8 * pages.size());
  b.put_u32(static_cast<uint32_t>(pages.size()));
  b.put_u32(hash_data ? RawFlag::kDataHashed : 0);
  b.put_u64(hash_data ? raw_pages_hash(hosts) : 0);
  for (const auto& [gpa, host] : pages) b.put_u64(gpa);
  Frame f = b.finish();
  f.pages = static_cast<uint32_t>(pages.size());
  f.attachment = std::move(hosts);
  return f;
}

Result<RawPagesHeader> parse_raw_pages(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kRawPages));
  wire::Reader r(f.payload, "RAW_PAGES");
  RawPagesHeader m;
  const uint32_t count = r.get<uint32_t>();
  m.flags = r.get<uint32_t>();
  m.data_hash = r.get<uint64_t>();
  if (count == 0 || count > kMaxRawPages)
    return Status::error("RAW_PAGES: " + std::to_string(count) + " pages (1.." + std::to_string(kMaxRawPages) + ")");
  if (m.flags & ~RawFlag::kKnownMask) return Status::error("RAW_PAGES: unknown flags " + std::to_string(m.flags));
  m.gpas.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t gpa = r.get<uint64_t>();
    if (gpa & (kPageSize - 1)) return Status::error("RAW_PAGES: page address " + std::to_string(gpa) + " not 4 KiB aligned");
    m.gpas.push_back(gpa);
  }
  MINIHV_TRY(r.finish());
  return m;
}

Frame make_query_reply(const QueryReply& m) {
  FrameBuilder b;
  b.begin(FrameType::kQueryReply);
  b.put_u64(m.session_id);
  b.put_u8(static_cast<uint8_t>(m.answer));
  return b.finish();
}

Frame make_abort(const Abort& m) {
  FrameBuilder b;
  b.begin(FrameType::kAbort);
  // A reason is for humans; cut it rather than fail to say it.
  b.put_string(std::string_view(m.reason).substr(0, kMaxStringBytes));
  return b.finish();
}

std::vector<Frame> make_state_frames(std::span<const uint8_t> blob) {
  std::vector<Frame> out;
  size_t off = 0;
  do {
    size_t n = std::min(kMaxStateChunk, blob.size() - off);
    bool last = off + n == blob.size();
    FrameBuilder b;
    b.begin(FrameType::kState, last ? FrameFlag::kLast : 0, 16 + n);
    b.put_u64(off);
    b.put_u64(blob.size());
    b.put_bytes(blob.subspan(off, n));
    out.push_back(b.finish());
    off += n;
  } while (off < blob.size());
  return out;
}

Result<StreamOpen> parse_stream_open(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kStreamOpen));
  wire::Reader r(f.payload, "STREAM_OPEN");
  StreamOpen m;
  m.session_id = r.get<uint64_t>();
  m.index = r.get<uint16_t>();
  m.count = r.get<uint16_t>();
  MINIHV_TRY(r.finish());
  if (m.count == 0 || m.count > kMaxStreams || m.index >= m.count)
    return Status::error("STREAM_OPEN: stream " + std::to_string(m.index) + " of " + std::to_string(m.count) +
                         " is out of range (1..=" + std::to_string(kMaxStreams) + " streams)");
  return m;
}

Result<Hello> parse_hello(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kHello));
  wire::Reader r(f.payload, "HELLO");
  Hello m;
  m.vm_json = r.string(kMaxStringBytes);
  m.cpu_profile_json = r.string(kMaxStringBytes);
  return finish(r, std::move(m));
}

Result<HelloReply> parse_hello_reply(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kHelloReply));
  wire::Reader r(f.payload, "HELLO_REPLY");
  HelloReply m;
  uint8_t accepted = r.get<uint8_t>();
  if (accepted > 1) return Status::error("HELLO_REPLY: accepted flag is " + std::to_string(accepted));
  m.accepted = accepted == 1;
  m.reason = r.string(kMaxStringBytes);
  return finish(r, std::move(m));
}

Result<RoundEnd> parse_round_end(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kDirtyRoundEnd));
  wire::Reader r(f.payload, "DIRTY_ROUND_END");
  RoundEnd m;
  m.round = r.get<uint32_t>();
  m.pages = r.get<uint32_t>();
  m.remaining_bytes = r.get<uint64_t>();
  m.last = (f.header.flags & FrameFlag::kLast) != 0;
  return finish(r, m);
}

Result<Query> parse_query(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kQuery));
  wire::Reader r(f.payload, "QUERY");
  Query m;
  m.session_id = r.get<uint64_t>();
  return finish(r, m);
}

Result<QueryReply> parse_query_reply(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kQueryReply));
  wire::Reader r(f.payload, "QUERY_REPLY");
  QueryReply m;
  m.session_id = r.get<uint64_t>();
  const uint8_t a = r.get<uint8_t>();
  MINIHV_TRY(r.finish());
  if (a > static_cast<uint8_t>(CommitAnswer::kCommitted))
    return Status::error("QUERY_REPLY: answer " + std::to_string(a) + " is not one this side knows");
  m.answer = static_cast<CommitAnswer>(a);
  return m;
}

Result<RoundAck> parse_round_ack(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kRoundAck));
  wire::Reader r(f.payload, "ROUND_ACK");
  RoundAck m;
  m.round = r.get<uint32_t>();
  return finish(r, m);
}

Result<Ack> parse_ack(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kAck));
  wire::Reader r(f.payload, "ACK");
  Ack m;
  m.owner = r.string(kMaxLeaseOwnerBytes);
  const uint32_t n = r.get<uint32_t>();
  if (n > kMaxHandedLeases) return Status::error("ACK: " + std::to_string(n) + " leases exceed " + std::to_string(kMaxHandedLeases));
  for (uint32_t i = 0; i < n; ++i) m.nonces.push_back(r.get<uint64_t>());
  return finish(r, std::move(m));
}

Result<StateChunk> parse_state_chunk(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kState));
  wire::Reader r(f.payload, "STATE");
  StateChunk m;
  m.offset = r.get<uint64_t>();
  m.total = r.get<uint64_t>();
  m.data = r.bytes(r.remaining());
  m.last = (f.header.flags & FrameFlag::kLast) != 0;
  MINIHV_TRY(r.finish());
  if (m.total > kMaxStateBytes)
    return Status::error("STATE: blob of " + std::to_string(m.total) + " bytes exceeds " +
                         std::to_string(kMaxStateBytes));
  if (m.offset > m.total || m.data.size() > m.total - m.offset)
    return Status::error("STATE: chunk [" + std::to_string(m.offset) + ", +" + std::to_string(m.data.size()) +
                         ") outside a blob of " + std::to_string(m.total) + " bytes");
  if (m.last != (m.offset + m.data.size() == m.total))
    return Status::error("STATE: last-chunk flag disagrees with offset and total");
  return m;
}

Result<std::vector<RangeDigest>> parse_verify(const FrameView& f) {
  if (f.type() != FrameType::kVerify && f.type() != FrameType::kVerifyReply)
    return Status::error("expected VERIFY or VERIFY_REPLY, got " + std::string(frame_type_name(f.type())));
  wire::Reader r(f.payload, frame_type_name(f.type()).data());
  uint32_t n = r.get<uint32_t>();
  if (uint64_t{n} * 24 != r.remaining())
    return Status::error(std::string(frame_type_name(f.type())) + ": " + std::to_string(n) +
                         " ranges do not fit " + std::to_string(f.payload.size()) + " bytes");
  std::vector<RangeDigest> out(n);
  for (auto& d : out) {
    d.gpa = r.get<uint64_t>();
    d.length = r.get<uint64_t>();
    d.digest = r.get<uint64_t>();
  }
  return finish(r, std::move(out));
}

Result<Abort> parse_abort(const FrameView& f) {
  MINIHV_TRY(expect_type(f, FrameType::kAbort));
  wire::Reader r(f.payload, "ABORT");
  Abort m;
  m.reason = r.string(kMaxStringBytes);
  return finish(r, std::move(m));
}

Result<bool> StateAssembler::add(const FrameView& f) {
  auto c = parse_state_chunk(f);
  if (!c) return c.status();
  if (complete_) return Status::error("STATE: chunk after the last one");
  if (!started_) {
    started_ = true;
    total_ = c->total;
    blob_.reserve(total_);
  }
  if (c->total != total_)
    return Status::error("STATE: total changed from " + std::to_string(total_) + " to " + std::to_string(c->total));
  if (c->offset != blob_.size())
    return Status::error("STATE: chunk at " + std::to_string(c->offset) + ", expected " +
                         std::to_string(blob_.size()));
  blob_.insert(blob_.end(), c->data.begin(), c->data.end());
  complete_ = c->last;
  return complete_;
}

}  // namespace minihv::migrate
