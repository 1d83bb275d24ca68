// Frame header, checksum, builder and the incremental parser. Payload structs: messages.cc.
#include "migrate/frames.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "migrate/wire.h"

namespace minihv::migrate {

namespace {
// The checksum covers header bytes [0, 24): everything but the checksum itself.
constexpr size_t kChecksummedHeaderBytes = 24;

uint64_t frame_checksum(const uint8_t* header, uint64_t payload_hash) {
  return XXH3_64bits_withSeed(header, kChecksummedHeaderBytes, payload_hash);
}

std::string hex32(uint32_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[i] = kDigits[v & 0xF];
  return s;
}
}  // namespace

void encode_header(const FrameHeader& h, uint8_t out[kHeaderSize]) {
  wire::store<uint32_t>(out + 0, h.magic);
  wire::store<uint16_t>(out + 4, h.version);
  wire::store<uint16_t>(out + 6, static_cast<uint16_t>(h.type));
  wire::store<uint16_t>(out + 8, h.flags);
  wire::store<uint16_t>(out + 10, h.stream);
  wire::store<uint32_t>(out + 12, h.payload_len);
  wire::store<uint64_t>(out + 16, h.sequence);
  wire::store<uint64_t>(out + 24, h.checksum);
}

FrameHeader decode_header(const uint8_t in[kHeaderSize]) {
  FrameHeader h;
  h.magic = wire::load<uint32_t>(in + 0);
  h.version = wire::load<uint16_t>(in + 4);
  h.type = static_cast<FrameType>(wire::load<uint16_t>(in + 6));
  h.flags = wire::load<uint16_t>(in + 8);
  h.stream = wire::load<uint16_t>(in + 10);
  h.payload_len = wire::load<uint32_t>(in + 12);
  h.sequence = wire::load<uint64_t>(in + 16);
  h.checksum = wire::load<uint64_t>(in + 24);
  return h;
}

FrameType Frame::type() const { return static_cast<FrameType>(wire::load<uint16_t>(bytes.data() + 6)); }
uint16_t Frame::flags() const { return wire::load<uint16_t>(bytes.data() + 8); }

void seal(Frame& f, uint16_t stream, uint64_t sequence) {
  uint8_t* h = f.bytes.data();
  wire::store<uint16_t>(h + 10, stream);
  wire::store<uint64_t>(h + 16, sequence);
  wire::store<uint64_t>(h + 24, frame_checksum(h, f.payload_hash));
}

// ---- builder ----

void FrameBuilder::begin(FrameType type, uint16_t flags, size_t reserve) {
  buf_.clear();
  buf_.reserve(kHeaderSize + reserve);
  buf_.resize(kHeaderSize);
  FrameHeader h;
  h.type = type;
  h.flags = flags;
  encode_header(h, buf_.data());
}

void FrameBuilder::put_u8(uint8_t v) { buf_.push_back(v); }
void FrameBuilder::put_u16(uint16_t v) { wire::store(extend(sizeof v), v); }
void FrameBuilder::put_u32(uint32_t v) { wire::store(extend(sizeof v), v); }
void FrameBuilder::put_u64(uint64_t v) { wire::store(extend(sizeof v), v); }
void FrameBuilder::put_bytes(std::span<const uint8_t> b) {
  if (!b.empty()) std::memcpy(extend(b.size()), b.data(), b.size());
}
void FrameBuilder::put_string(std::string_view s) {
  put_u32(static_cast<uint32_t>(s.size()));
  put_bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

uint8_t* FrameBuilder::extend(size_t n) {
  size_t at = buf_.size();
  buf_.resize(at + n);
  return buf_.data() + at;
}
void FrameBuilder::shrink_to(size_t payload_size) { buf_.resize(kHeaderSize + payload_size); }
uint8_t* FrameBuilder::payload_at(size_t offset) { return buf_.data() + kHeaderSize + offset; }
size_t FrameBuilder::payload_size() const { return buf_.size() - kHeaderSize; }
void FrameBuilder::set_flags(uint16_t flags) { wire::store<uint16_t>(buf_.data() + 8, flags); }

Frame FrameBuilder::finish() {
  Frame f;
  size_t len = payload_size();
  wire::store<uint32_t>(buf_.data() + 12, static_cast<uint32_t>(len));
  f.payload_hash = XXH3_64bits(buf_.data() + kHeaderSize, len);
  f.bytes = std::move(buf_);
  buf_ = Bytes();
  return f;
}

// ---- parser ----

std::string_view frame_error_name(FrameError e) {
  switch (e) {
    case FrameError::kNone: return "none";
    case FrameError::kBadMagic: return "bad magic";
    case FrameError::kBadVersion: return "bad version";
    case FrameError::kUnknownType: return "unknown frame type";
    case FrameError::kBadFlags: return "unknown flags";
    case FrameError::kTooLong: return "payload length over maximum";
    case FrameError::kBadChecksum: return "checksum mismatch";
    case FrameError::kBadStream: return "wrong stream";
    case FrameError::kBadSequence: return "bad sequence";
    case FrameError::kBadAttachment: return "bad attachment";
  }
  return "?";
}

FrameParser::FrameParser(int stream, size_t capacity) : stream_(stream) {
  buf_.resize(std::max(capacity, kHeaderSize + kMaxPayload));
}

void FrameParser::reset(int stream) {
  stream_ = stream;
  begin_ = end_ = 0;
  next_sequence_ = 0;
  attachment_left_ = 0;
  error_ = FrameError::kNone;
  error_message_.clear();
}

size_t FrameParser::writable() const { return buf_.size() - (end_ - begin_); }

std::span<uint8_t> FrameParser::prepare(size_t min) {
  if (begin_ == end_) {
    begin_ = end_ = 0;  // all taken: start over without copying
  } else if (buf_.size() - end_ < min && begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameParser::commit(size_t n) { end_ += std::min(n, buf_.size() - end_); }

size_t FrameParser::feed(std::span<const uint8_t> bytes) {
  auto room = prepare(bytes.size());
  size_t n = std::min(room.size(), bytes.size());
  if (n) std::memcpy(room.data(), bytes.data(), n);
  commit(n);
  return n;
}

Status FrameParser::fail(FrameError e, std::string detail) {
  error_ = e;
  error_message_ = "corrupt frame #" + std::to_string(next_sequence_) +
                   (stream_ >= 0 ? " on stream " + std::to_string(stream_) : std::string()) + ": " +
                   std::string(frame_error_name(e)) + " (" + detail + ")";
  return Status::error(error_message_);
}

size_t FrameParser::bytes_to_frame_end() const {
  const size_t have = end_ - begin_;
  if (have < kHeaderSize) return kHeaderSize - have;
  const size_t frame = kHeaderSize + std::min<size_t>(wire::load<uint32_t>(buf_.data() + begin_ + 12), kMaxPayload);
  return frame > have ? frame - have : 0;
}

std::span<const uint8_t> FrameParser::attachment_buffered() const {
  return {buf_.data() + begin_, std::min(end_ - begin_, attachment_left_)};
}

void FrameParser::take_buffered_attachment(size_t n) {
  n = std::min(n, attachment_buffered().size());
  begin_ += n;
  attachment_left_ -= n;
}

void FrameParser::attachment_received_elsewhere(size_t n) { attachment_left_ -= std::min(n, attachment_left_); }

Result<std::optional<FrameView>> FrameParser::next() {
  if (error_ != FrameError::kNone) return Status::error(error_message_);
  if (attachment_left_) return Status::error("the last frame's attachment was not taken");
  if (end_ - begin_ < kHeaderSize) return std::optional<FrameView>();
  const uint8_t* p = buf_.data() + begin_;
  FrameHeader h = decode_header(p);
  // Header fields are checked before waiting for the payload: a bad length must not stall.
  if (h.magic != kMagic) return fail(FrameError::kBadMagic, "got 0x" + hex32(h.magic));
  if (h.version != kVersion)
    return fail(FrameError::kBadVersion,
                "peer speaks version " + std::to_string(h.version) + ", we speak " + std::to_string(kVersion));
  auto raw_type = static_cast<uint16_t>(h.type);
  if (!is_known_frame_type(raw_type)) return fail(FrameError::kUnknownType, "type " + std::to_string(raw_type));
  if (h.flags & ~FrameFlag::kKnownMask) return fail(FrameError::kBadFlags, "flags " + std::to_string(h.flags));
  if (h.payload_len > kMaxPayload)
    return fail(FrameError::kTooLong, std::to_string(h.payload_len) + " > " + std::to_string(kMaxPayload));
  if (end_ - begin_ < kHeaderSize + h.payload_len) return std::optional<FrameView>();
  std::span<const uint8_t> payload(p + kHeaderSize, h.payload_len);
  if (frame_checksum(p, XXH3_64bits(payload.data(), payload.size())) != h.checksum)
    return fail(FrameError::kBadChecksum, std::string(frame_type_name(h.type)) + ", " +
                                              std::to_string(h.payload_len) + " byte payload");
  if (stream_ >= 0 && h.stream != stream_)
    return fail(FrameError::kBadStream, "header says stream " + std::to_string(h.stream));
  if (h.sequence != next_sequence_)
    return fail(FrameError::kBadSequence,
                "expected " + std::to_string(next_sequence_) + ", got " + std::to_string(h.sequence));
  FrameView view{h, payload};
  if (h.type == FrameType::kRawPages) {
    // Where the attachment ends must be known before a byte of it is read: from the page count.
    const uint32_t count = payload.size() >= 4 ? wire::load<uint32_t>(payload.data()) : 0;
    if (count == 0 || count > kMaxRawPages || payload.size() != kRawPagesFixedBytes + 8 * size_t{count})
      return fail(FrameError::kBadAttachment, std::to_string(count) + " pages in a " +
                                                  std::to_string(payload.size()) + " byte payload");
    view.attachment_bytes = size_t{count} * kPageSize;
    attachment_left_ = view.attachment_bytes;
  }
  ++next_sequence_;
  begin_ += kHeaderSize + h.payload_len;  // memory stays put until the next prepare()
  return std::optional<FrameView>(view);
}

}  // namespace minihv::migrate
