// migrate/transport.h — a migration session: N TCP streams between source and destination, each
// stream a lane with its own io_uring, so that N threads can move N streams' bytes at once.
//
// Owns: resolving and trying the ordered target list, each connection's TLS handshake
// (options.psk; the bytes then go through a StreamChannel, migrate/stream_channel.h) and its
// STREAM_OPEN (one session id ties N connections together), the listener's bounds on idle peers,
// queued sends with backpressure, receiving and validating
// frames on every stream, the round barrier on the control stream, dead-peer detection, throughput.
// Must not know: what frames mean beyond STREAM_OPEN and DIRTY_ROUND_END, guest memory, KVM.
//
// Threading: a Session (and a Listener) is owned by one thread. The per-stream calls — send(s),
// count_pages(s), flush_stream(s), receive_stream(s), take_link_sample(s) — touch stream s only:
// while that owner waits, other threads may drive other streams, one thread per stream (each
// stream's worker, migrate/workers.h). The calls over every stream — send_round_end, flush, poll,
// receive — and the destructor need every stream idle (no other thread in a call). stop() may be
// called from any thread. A FrameHandler or AttachmentSink given to receive_stream runs on that
// stream's thread and must send on that stream only.
//
// Ordering guarantees (docs/migration-protocol.md §Ordering):
//  - Frames sent on one stream arrive in order (TCP; the parser also checks the sequence numbers).
//  - A page always goes on stream_for_page(gpa) (protocol.h), so its copies never overtake each other.
//  - Round barrier: when stream 0 (the control stream) yields DIRTY_ROUND_END(r), the receiver holds it
//    — and everything after it on stream 0 — until every other stream has delivered its
//    DIRTY_ROUND_END(r') with r' >= r and its handler returned. So the handler sees stream 0's
//    DIRTY_ROUND_END(r) last among the N of round r (and, with one thread per stream, after every
//    other stream's pages are in memory), and STATE / VERIFY / COMMIT sent on stream 0 after the
//    final DIRTY_ROUND_END are handled only after every page of every stream.
//    => The source must send DIRTY_ROUND_END(r) on every stream (send_round_end()).
//  - Frames from different streams are otherwise delivered in no particular order.
//
// Errors: EOF, ECONNRESET, a stream making no progress for io_timeout, a corrupt frame (with the
// parser's typed reason) — all come back as a Status from send/flush/poll/receive naming the stream.
// A send-side failure is final for its stream (every later call on it fails). A receive-side one
// (peer closed a stream, corrupt frame, handler error, timeout) still lets you send ABORT on stream 0
// and flush() before destroying the Session (which shuts down and closes every socket).
//
// Link speed (stats().throughput_bytes_per_s, take_link_sample) is bytes the kernel accepted per
// second of having data queued; with socket buffers it can read high on short transfers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/net.h"
#include "common/status.h"
#include "common/tls.h"
#include "migrate/frames.h"

namespace minihv::migrate {

// Endpoints are common/net.h's; a migration names them as its own.
using net::Endpoint;
using net::parse_endpoint;
using net::parse_endpoint_list;

struct TransportOptions {
  uint16_t streams = 1;                              // 1 ..= kMaxStreams (the sender's choice)
  std::chrono::milliseconds connect_timeout{3000};   // per target address
  std::chrono::milliseconds io_timeout{10000};       // no progress this long on a busy stream = dead peer
  size_t max_queued_bytes = 8u << 20;                // per stream; send() blocks above this
  uint64_t session_id = 0;                           // 0: random
  // TLS 1.3 with this key on every connection (a channel key: keys::derive, never a file's key);
  // std::nullopt: plain TCP, only with --insecure. Both ends must agree: a TLS end refuses a
  // plain peer and the other way round.
  std::optional<tls::Psk> psk;
};

// The channel key of a migration, derived from a key file's key (docs/security.md, "Migration").
inline constexpr std::string_view kMigrationStreamLabel = "stream";
// keys::derive(file_key, keys::migration_label(kMigrationStreamLabel)) as a tls::Psk.
Result<tls::Psk> migration_psk(const keys::Secret& file_key);
// A listener's limits against idle or slow peers (connections that have not finished their TLS
// handshake and STREAM_OPEN): each gets kOpenDeadline; beyond kMaxHalfOpenPerAddress from one
// address that address's oldest is closed, beyond kMaxHalfOpen in all the oldest: one host's flood
// closes only its own connections (room for a whole session and its retry per address).
inline constexpr std::chrono::milliseconds kOpenDeadline{5000};
inline constexpr size_t kMaxHalfOpen = 64;
inline constexpr size_t kMaxHalfOpenPerAddress = 2 * kMaxStreams;

// One target tried by connect(): its address and what happened (ok for the one used).
struct ConnectAttempt {
  std::string address;
  Status result;
};

enum class Next { kContinue, kStop };
// Called with each validated frame; view.header.stream is the stream it came on. Returning an error
// stops the loop with that error; kStop ends receive() successfully.
using FrameHandler = std::function<Result<Next>(const FrameView& view)>;
// Receiver of RAW_PAGES: given the frame (its payload checked), says where each 4096 bytes of its
// attachment go — one host pointer per page, in order — or refuses the frame. The transport then
// receives the pages straight there and hands the frame to the FrameHandler once they are in.
using AttachmentSink = std::function<Result<std::vector<uint8_t*>>(const FrameView& view)>;

struct TransportStats {
  uint64_t bytes_sent = 0, bytes_received = 0;
  uint64_t bytes_received_in_place = 0;  // RAW_PAGES pages received straight where they go
  uint64_t frames_sent = 0, frames_received = 0;
  double busy_seconds = 0;  // time with sends in flight (over the session: the busiest stream's)
  // Link speed as seen by the sender: bytes_sent / busy_seconds (0 before any send).
  double throughput_bytes_per_s() const { return busy_seconds > 0 ? bytes_sent / busy_seconds : 0; }
};

class Session {
public:
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Source side. Tries `targets` in order; each refused/unreachable/timed-out one is recorded in
  // `tried` and skipped; opens options.streams connections to the first that accepts and sends
  // STREAM_OPEN on each. Fails (naming every address) when none accepts.
  static Result<std::unique_ptr<Session>> connect(std::span<const Endpoint> targets,
                                                  const TransportOptions& options,
                                                  std::vector<ConnectAttempt>* tried = nullptr);

  uint16_t streams() const;
  uint64_t session_id() const;
  std::string peer() const;
  // Which TLS carries the streams: tls::Session::describe() of stream 0, or "none (plain TCP,
  // --insecure)".
  std::string tls() const;
  // Wall time of the TLS handshakes of every stream (they run at once); 0 over plain TCP.
  double handshake_ms() const;

  // Stamps stream + sequence, checksums and queues the frame; returns at once unless the stream has
  // more than max_queued_bytes queued, in which case it drives the ring until it is below (or fails
  // after io_timeout without progress). Incoming frames are buffered meanwhile, never delivered here.
  Status send(uint16_t stream, Frame frame);
  // DIRTY_ROUND_END(m) on every stream, stream 0 last, flagged last when m.last. m.pages is ignored:
  // each stream's count_pages() total since its previous round end is filled in, so the receiver may
  // check it against what it decoded on that stream.
  Status send_round_end(RoundEnd m);
  // Adds to the page count of `stream`'s next round end (e.g. Frame::pages of each PAGES frame sent).
  void count_pages(uint16_t stream, uint32_t pages);
  // Waits until every queued byte has been handed to the kernel.
  Status flush();
  // The same for one stream.
  Status flush_stream(uint16_t stream);

  // Where RAW_PAGES attachments go (destination); without one a RAW_PAGES frame is an error.
  void set_attachment_sink(AttachmentSink sink);

  // Delivers the frames that are already here without waiting (the source's check for ABORT).
  Status poll(const FrameHandler& handler);
  // Delivers frames until the handler returns kStop, an error, or `timeout` passes with no frame.
  Status receive(const FrameHandler& handler, std::chrono::milliseconds timeout);
  // The same on one stream, for that stream's thread (stream 0's waits for the barrier on the others).
  // Ends early with the reason once stop() was called.
  Status receive_stream(uint16_t stream, const FrameHandler& handler, std::chrono::milliseconds timeout);
  // After sending failed (the peer went away): the frames stream 0 still holds or brings within
  // `timeout` — a peer that gave up sent its ABORT before it closed.
  Status receive_remaining(const FrameHandler& handler, std::chrono::milliseconds timeout);
  // Makes every receive_stream (on any thread) return `why` within kStopCheck: one stream's failure
  // ends the others'. Sending still works (ABORT on stream 0).
  void stop(Status why);
  static constexpr std::chrono::milliseconds kStopCheck{20};

  // Totals over every stream (call with every stream idle).
  TransportStats stats() const;
  // Bytes `stream` sent and its busy seconds since the previous call (CompressionChooser::observe_link).
  std::pair<uint64_t, double> take_link_sample(uint16_t stream);

  struct Impl;

private:
  friend class Listener;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Why Listener::accept (and migrate_in) ended when its cancel fd fired.
constexpr const char* kAcceptCancelled = "the wait for a migrating VM was cancelled";

// Destination side.
class Listener {
public:
  ~Listener();
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;

  static Result<Listener> listen(const Endpoint& where);
  uint16_t port() const;  // the bound port (useful with port 0)

  // Accepts the first connection, runs its TLS handshake (with options.psk) and reads its
  // STREAM_OPEN (session id, stream count), then the other streams of the same session.
  // Connections with another session id, a failed handshake (wrong key, not TLS) or no STREAM_OPEN
  // within kOpenDeadline are closed; all of them are driven from this thread's one poll loop, at
  // most kMaxHalfOpen at a time (the oldest goes), so idle peers cannot hold up a real source. Fails after
  // `timeout` with what was missing, or at once when `cancel_fd` (>= 0) becomes readable.
  Result<std::unique_ptr<Session>> accept(const TransportOptions& options, std::chrono::milliseconds timeout,
                                          int cancel_fd = -1);
  // One more connection, blocking (after the session, for QUERY: in_doubt.h); std::nullopt when
  // none arrived within `timeout`.
  Result<std::optional<UniqueFd>> accept_one(std::chrono::milliseconds timeout);

private:
  Listener();
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace minihv::migrate
