#include "migrate/frames.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include <xxhash.h>

#include "migrate/wire.h"

namespace minihv::migrate {
namespace {

Frame sealed(Frame f, uint16_t stream, uint64_t seq) {
  seal(f, stream, seq);
  return f;
}

std::vector<uint8_t> bytes_of(const Frame& f) { return {f.bytes.begin(), f.bytes.end()}; }

// Three frames of different kinds, sealed in sequence on stream 1.
std::vector<uint8_t> sample_stream() {
  std::vector<uint8_t> out;
  std::vector<Frame> frames;
  frames.push_back(make_hello({R"({"mem":1})", R"({"cpu":"x"})"}));
  frames.push_back(make_round_end({3, 17, 4096, true}));
  FrameBuilder b;
  b.begin(FrameType::kPages);
  for (int i = 0; i < 1000; ++i) b.put_u8(static_cast<uint8_t>(i));
  frames.push_back(b.finish());
  for (size_t i = 0; i < frames.size(); ++i) {
    auto v = bytes_of(sealed(std::move(frames[i]), 1, i));
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

std::vector<FrameType> parse_all(FrameParser& p, std::span<const uint8_t> in, size_t split, Status* error) {
  std::vector<FrameType> types;
  size_t off = 0;
  while (off < in.size() || p.buffered()) {
    size_t n = std::min(split, in.size() - off);
    off += p.feed(in.subspan(off, n));
    while (true) {
      auto f = p.next();
      if (!f) {
        *error = f.status();
        return types;
      }
      if (!*f) break;
      types.push_back((*f)->type());
    }
    if (off == in.size()) break;
  }
  return types;
}

TEST(MigrateFrames, HeaderIs32BytesLittleEndian) {
  Frame f = sealed(make_commit(), 2, 7);
  ASSERT_EQ(f.bytes.size(), kHeaderSize);
  EXPECT_EQ(std::memcmp(f.bytes.data(), "MHVM", 4), 0);
  FrameHeader h = decode_header(f.bytes.data());
  EXPECT_EQ(h.version, kVersion);
  EXPECT_EQ(h.type, FrameType::kCommit);
  EXPECT_EQ(h.stream, 2);
  EXPECT_EQ(h.sequence, 7u);
  EXPECT_EQ(h.payload_len, 0u);
}

TEST(MigrateFrames, AcceptsFramesSplitAtEveryByteBoundary) {
  auto in = sample_stream();
  for (size_t split = 1; split <= in.size(); ++split) {
    FrameParser p(1);
    Status err;
    auto types = parse_all(p, in, split, &err);
    ASSERT_TRUE(err) << "split " << split << ": " << err.message();
    ASSERT_EQ(types.size(), 3u) << "split " << split;
    EXPECT_EQ(types[0], FrameType::kHello);
    EXPECT_EQ(types[1], FrameType::kDirtyRoundEnd);
    EXPECT_EQ(types[2], FrameType::kPages);
  }
}

TEST(MigrateFrames, AcceptsTwoWholeFramesCutAnywhere) {
  auto in = sample_stream();
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    FrameParser p(1);
    p.feed(std::span(in).first(cut));
    size_t got = 0;
    while (auto f = p.next()) {
      if (!*f) break;
      ++got;
    }
    p.feed(std::span(in).subspan(cut));
    while (auto f = p.next()) {
      if (!*f) break;
      ++got;
    }
    EXPECT_EQ(got, 3u) << "cut " << cut;
  }
}

struct Corruption {
  const char* name;
  size_t offset;  // byte of the first frame to change
  uint8_t value;  // xor
  FrameError expect;
};

TEST(MigrateFrames, RejectsEveryCorruptionWithItsReason) {
  const Corruption cases[] = {
      {"magic", 0, 0xFF, FrameError::kBadMagic},
      {"version", 4, 0x02, FrameError::kBadVersion},
      {"unknown type", 6, 0x40, FrameError::kUnknownType},
      {"flags", 8, 0x80, FrameError::kBadFlags},
      {"length over max", 15, 0x10, FrameError::kTooLong},
      {"stream field", 10, 0x02, FrameError::kBadChecksum},
      {"sequence field", 16, 0x01, FrameError::kBadChecksum},
      {"checksum", 30, 0x01, FrameError::kBadChecksum},
      {"payload byte", kHeaderSize + 5, 0x01, FrameError::kBadChecksum},
      {"type to another valid type", 6, 0x01, FrameError::kBadChecksum},
  };
  for (const auto& c : cases) {
    auto in = sample_stream();
    in[c.offset] ^= c.value;
    FrameParser p(1);
    p.feed(in);
    auto f = p.next();
    ASSERT_FALSE(f) << c.name;
    EXPECT_EQ(p.error(), c.expect) << c.name << ": " << f.message();
    EXPECT_NE(f.message().find(frame_error_name(c.expect)), std::string::npos) << f.message();
    EXPECT_FALSE(p.next()) << "errors are sticky";
  }
}

TEST(MigrateFrames, RejectsWrongStreamAndSequence) {
  {
    FrameParser p(0);
    auto v = bytes_of(sealed(make_ack(), 1, 0));
    p.feed(v);
    EXPECT_FALSE(p.next());
    EXPECT_EQ(p.error(), FrameError::kBadStream);
  }
  for (uint64_t seq : {1ull, 5ull}) {
    FrameParser p(0);
    p.feed(bytes_of(sealed(make_ack(), 0, 0)));
    p.feed(bytes_of(sealed(make_ack(), 0, seq)));  // only 1 may follow 0
    auto a = p.next();
    ASSERT_TRUE(a && *a);
    auto b = p.next();
    if (seq == 1) {
      EXPECT_TRUE(b && *b);
    } else {
      EXPECT_FALSE(b);
      EXPECT_EQ(p.error(), FrameError::kBadSequence);
    }
  }
}

TEST(MigrateFrames, OverlongLengthFailsBeforeThePayloadArrives) {
  auto v = bytes_of(sealed(make_ack(), 0, 0));
  wire::store<uint32_t>(v.data() + 12, kMaxPayload + 1);
  FrameParser p(0);
  p.feed(std::span(v).first(kHeaderSize));
  EXPECT_FALSE(p.next());
  EXPECT_EQ(p.error(), FrameError::kTooLong);
}

FrameView view_of(const Frame& f) {
  return {decode_header(f.bytes.data()), std::span<const uint8_t>(f.bytes).subspan(kHeaderSize)};
}

TEST(MigrateFrames, ControlPayloadsRoundTrip) {
  Frame so = make_stream_open({0x1122334455667788ull, 2, 4});
  auto o = parse_stream_open(view_of(so));
  ASSERT_TRUE(o) << o.message();
  EXPECT_EQ(o->session_id, 0x1122334455667788ull);
  EXPECT_EQ(o->index, 2);
  EXPECT_EQ(o->count, 4);

  auto h = parse_hello(view_of(make_hello({"{\"a\":1}", "cpu"})));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->vm_json, "{\"a\":1}");
  EXPECT_EQ(h->cpu_profile_json, "cpu");

  auto r = parse_hello_reply(view_of(make_hello_reply({false, "CPU lacks avx512f"})));
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->accepted);
  EXPECT_EQ(r->reason, "CPU lacks avx512f");

  Frame re_frame = make_round_end({9, 100, 1 << 20, true});
  EXPECT_EQ(re_frame.flags(), FrameFlag::kLast);
  auto re = parse_round_end(view_of(re_frame));
  ASSERT_TRUE(re);
  EXPECT_EQ(re->round, 9u);
  EXPECT_EQ(re->pages, 100u);
  EXPECT_EQ(re->remaining_bytes, 1u << 20);
  EXPECT_TRUE(re->last);

  std::vector<RangeDigest> d = {{0, 4096, 1}, {8192, 4096, 2}};
  auto vr = parse_verify(view_of(make_verify(d)));
  ASSERT_TRUE(vr);
  ASSERT_EQ(vr->size(), 2u);
  EXPECT_EQ((*vr)[1].gpa, 8192u);
  EXPECT_EQ((*vr)[1].digest, 2u);
  auto vr2 = parse_verify(view_of(make_verify_reply({})));
  ASSERT_TRUE(vr2);
  EXPECT_TRUE(vr2->empty());

  auto a = parse_abort(view_of(make_abort({"disk lease lost"})));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->reason, "disk lease lost");

  auto q = parse_query(view_of(make_query({0xAABBCCDD00112233ull})));
  ASSERT_TRUE(q);
  EXPECT_EQ(q->session_id, 0xAABBCCDD00112233ull);
  for (CommitAnswer c : {CommitAnswer::kUnknown, CommitAnswer::kCommitted}) {
    auto qr = parse_query_reply(view_of(make_query_reply({77, c})));
    ASSERT_TRUE(qr);
    EXPECT_EQ(qr->session_id, 77u);
    EXPECT_EQ(qr->answer, c);
  }
}

TEST(MigrateFrames, AQueryReplyWithAnAnswerThisSideDoesNotKnowIsRefused) {
  Frame f = make_query_reply({1, CommitAnswer::kCommitted});
  f.bytes[kHeaderSize + 8] = 7;  // neither unknown nor committed: never read as "committed"
  EXPECT_FALSE(parse_query_reply(view_of(f)));
  EXPECT_FALSE(parse_query_reply(view_of(make_query({1}))));  // wrong type
}

TEST(MigrateFrames, PayloadDecodersRejectBadShapes) {
  EXPECT_FALSE(parse_hello(view_of(make_ack())));                      // wrong type
  EXPECT_FALSE(parse_stream_open(view_of(make_stream_open({1, 4, 4}))));  // index >= count
  EXPECT_FALSE(parse_stream_open(view_of(make_stream_open({1, 0, 0}))));
  Frame f = make_abort({"x"});
  f.bytes.push_back(0);  // trailing byte
  EXPECT_FALSE(parse_abort(view_of(f)));
  Frame g = make_abort({"xyz"});
  wire::store<uint32_t>(g.bytes.data() + kHeaderSize, 0xFFFFFFFF);  // string longer than payload
  EXPECT_FALSE(parse_abort(view_of(g)));
  Frame v = make_verify(std::vector<RangeDigest>{{0, 1, 2}});
  wire::store<uint32_t>(v.bytes.data() + kHeaderSize, 1000);  // count disagrees with size
  EXPECT_FALSE(parse_verify(view_of(v)));
}

TEST(MigrateFrames, StateIsChunkedAndReassembled) {
  std::vector<uint8_t> blob(kMaxStateChunk * 2 + 123);
  std::mt19937 rng(1);
  for (auto& b : blob) b = static_cast<uint8_t>(rng());
  auto frames = make_state_frames(blob);
  ASSERT_EQ(frames.size(), 3u);
  StateAssembler as;
  for (size_t i = 0; i < frames.size(); ++i) {
    auto done = as.add(view_of(frames[i]));
    ASSERT_TRUE(done) << done.message();
    EXPECT_EQ(*done, i + 1 == frames.size());
  }
  EXPECT_EQ(as.take(), blob);

  auto empty = make_state_frames({});
  ASSERT_EQ(empty.size(), 1u);
  StateAssembler e;
  auto d = e.add(view_of(empty[0]));
  ASSERT_TRUE(d);
  EXPECT_TRUE(*d);
}

TEST(MigrateFrames, StateAssemblerRejectsGapsAndLies) {
  std::vector<uint8_t> blob(kMaxStateChunk + 10, 7);
  auto frames = make_state_frames(blob);
  StateAssembler skip;
  EXPECT_FALSE(skip.add(view_of(frames[1])));  // starts at an offset
  StateAssembler twice;
  ASSERT_TRUE(twice.add(view_of(frames[0])));
  EXPECT_FALSE(twice.add(view_of(frames[0])));  // repeated chunk
  Frame huge = make_state_frames(std::vector<uint8_t>(10))[0];
  wire::store<uint64_t>(huge.bytes.data() + kHeaderSize + 8, kMaxStateBytes + 1);
  StateAssembler big;
  EXPECT_FALSE(big.add(view_of(huge)));
}

}  // namespace
}  // namespace minihv::migrate

namespace minihv::migrate {
namespace {

// RAW_PAGES: the pages follow the frame on the stream. However the bytes are split, the parser
// hands out the frame, then the attachment (whatever part of it it buffered), then the next frame.
TEST(MigrateFrames, RawPagesAttachmentsComeOutWholeHoweverTheStreamIsSplit) {
  std::vector<uint8_t> pages(3 * kPageSize);
  for (size_t i = 0; i < pages.size(); ++i) pages[i] = static_cast<uint8_t>(i * 7 + 1);
  std::vector<std::pair<uint64_t, const uint8_t*>> list;
  for (size_t i = 0; i < 3; ++i) list.push_back({(10 + i) * kPageSize, pages.data() + i * kPageSize});
  Frame raw = make_raw_pages(list, false);
  seal(raw, 1, 0);
  std::vector<uint8_t> in(raw.bytes.begin(), raw.bytes.end());
  in.insert(in.end(), pages.begin(), pages.end());
  auto tail = bytes_of(sealed(make_round_end({1, 3, 0, false}), 1, 1));
  in.insert(in.end(), tail.begin(), tail.end());
  for (size_t split : {size_t{1}, size_t{7}, size_t{4096}, size_t{5000}, in.size()}) {
    FrameParser p(1);
    std::vector<uint8_t> got;
    std::vector<FrameType> types;
    for (size_t off = 0; off < in.size() || p.buffered();) {
      if (off < in.size()) off += p.feed(std::span<const uint8_t>(in).subspan(off, std::min(split, in.size() - off)));
      if (p.attachment_left()) {
        auto b = p.attachment_buffered();
        got.insert(got.end(), b.begin(), b.end());
        p.take_buffered_attachment(b.size());
        continue;
      }
      auto f = p.next();
      ASSERT_TRUE(f) << f.message();
      if (!*f) {
        if (off >= in.size()) break;
        continue;
      }
      types.push_back((*f)->type());
      if ((*f)->type() == FrameType::kRawPages) {
        EXPECT_EQ((*f)->attachment_bytes, pages.size());
        auto h = parse_raw_pages(**f);
        ASSERT_TRUE(h) << h.message();
        EXPECT_EQ(h->gpas.size(), 3u);
        EXPECT_EQ(h->gpas[2], 12 * kPageSize);
      }
    }
    EXPECT_EQ(types, (std::vector<FrameType>{FrameType::kRawPages, FrameType::kDirtyRoundEnd})) << "split " << split;
    EXPECT_EQ(got, pages) << "split " << split;
  }
}

TEST(MigrateFrames, RawPagesWhoseCountAndLengthDisagreeAreCorrupt) {
  std::vector<uint8_t> page(kPageSize, 1);
  std::vector<std::pair<uint64_t, const uint8_t*>> one{{0, page.data()}};
  Frame raw = make_raw_pages(one, false);
  wire::store<uint32_t>(raw.bytes.data() + kHeaderSize, 9);  // says 9 pages, lists 1
  raw.payload_hash = XXH3_64bits(raw.bytes.data() + kHeaderSize, raw.payload_size());
  seal(raw, 0, 0);
  FrameParser p(0);
  p.feed(bytes_of(raw));
  auto f = p.next();
  ASSERT_FALSE(f);
  EXPECT_EQ(p.error(), FrameError::kBadAttachment) << f.message();
}

TEST(MigrateFrames, TheNextFrameWaitsUntilTheAttachmentIsTaken) {
  std::vector<uint8_t> page(kPageSize, 3);
  std::vector<std::pair<uint64_t, const uint8_t*>> one{{0, page.data()}};
  Frame raw = make_raw_pages(one, false);
  seal(raw, 0, 0);
  FrameParser p(0);
  p.feed(bytes_of(raw));
  p.feed(page);
  auto f = p.next();
  ASSERT_TRUE(f && *f);
  EXPECT_FALSE(p.next()) << "reading on would take page bytes for a frame header";
  p.take_buffered_attachment(kPageSize);
  auto g = p.next();
  ASSERT_TRUE(g);
  EXPECT_FALSE(*g);
}

}  // namespace
}  // namespace minihv::migrate

namespace minihv::migrate {
namespace {

// ACK carries the destination's lease owner and a nonce per disk (the hand-over); an empty one
// (nothing to hand over) still parses, and the limits hold.
TEST(MigrateFrames, AckCarriesTheLeaseHandOver) {
  const Ack a{"node2/pid 7", {3, 5}};
  auto back = parse_ack(view_of(make_ack(a)));
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(back->owner, a.owner);
  EXPECT_EQ(back->nonces, a.nonces);
  auto empty = parse_ack(view_of(make_ack()));
  ASSERT_TRUE(empty) << empty.message();
  EXPECT_TRUE(empty->owner.empty());
  EXPECT_TRUE(empty->nonces.empty());
  EXPECT_FALSE(parse_ack(view_of(make_ack({"x", std::vector<uint64_t>(kMaxHandedLeases + 1, 1)}))));
  EXPECT_FALSE(parse_ack(view_of(make_ack({std::string(kMaxLeaseOwnerBytes + 1, 'o'), {}}))));
  EXPECT_FALSE(parse_ack(view_of(make_commit())));  // wrong type
}

}  // namespace
}  // namespace minihv::migrate
