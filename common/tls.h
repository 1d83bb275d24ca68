// common/tls.h — TLS 1.3 over a connected TCP socket, authenticated by a pre-shared key (no
// certificates), with kernel TLS where the kernel and OpenSSL can do it.
//
// Owns: the one TLS configuration minihv speaks (TLS 1.3 only, TLS_AES_128_GCM_SHA256, external PSK
// with a fixed identity, (EC)DHE on top for forward secrecy, no session tickets), the handshake under
// a deadline, naming why a handshake failed, reading and writing through the session, and saying
// whether each direction of a connection runs in the kernel (kTLS) or in user space.
// Must not know: what travels on the connection (JSON lines, migration frames), where the key comes
// from (common/keys.h derives one per purpose), who the peer is beyond "holds the key".
//
// The fd stays the caller's: a Session never closes it (destroy the Session, then close the fd). A
// Session is used by one thread at a time, like an SSL*.
//
// Kernel TLS (docs/security.md, "Kernel TLS"):
//  - Needs the kernel's `tls` module (CONFIG_TLS; setsockopt(TCP_ULP, "tls")) and OpenSSL built with
//    kTLS (Debian's is). Where the module is missing (setsockopt gives ENOENT) OpenSSL falls back to
//    user space without an error: each Session says what it got (ktls_send(), ktls_recv(), offload()).
//  - The module needs the kernel's gcm(aes) too (gcm, ctr, ghash, aesni-intel: modprobe loads them on
//    demand; a busybox initramfs without modprobe must insert them, or TLS_TX fails and OpenSSL
//    falls back to user space).
//  - OpenSSL 3.0 and 3.1 (Debian 12 has 3.0) offload only the SEND direction of TLS 1.3 to the
//    kernel; receiving TLS 1.3 in the kernel came with OpenSSL 3.2. So with Debian 12, even with the
//    module, ktls_send() is true but ktls_recv() false: the receiver decrypts in user space (seen in
//    the hw lane's L1: "kernel TLS send, user-space receive" on both ends).
//  - With ktls_send(), the fd itself takes plain bytes: send(2) on it goes out as TLS data records
//    (the kernel encrypts; a unit test checks it where kTLS exists), and so, by the kernel's
//    documentation (Documentation/networking/tls.rst), do sendmsg, io_uring sends, sendfile/splice. Do not mix that with write_all()
//    on the same session from two threads at once (both would cut records).
//  - With ktls_recv(), read/recv/io_uring receives on the fd return decrypted data records only. A
//    record of another type (an alert such as close_notify, or a post-handshake message such as
//    KeyUpdate or NewSessionTicket) makes a plain read fail with EIO; only recvmsg with a control
//    buffer sees it (cmsg SOL_TLS/TLS_GET_RECORD_TYPE); read() (OpenSSL's SSL_read) handles that.
//    minihv sends no tickets and no KeyUpdate, so on a minihv connection EIO means: the peer sent an
//    alert (usually close_notify at the end), treat it as the end of the stream.
//  - Without kTLS a direction must go through read() / write_all() (SSL_read / SSL_write).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/keys.h"
#include "common/status.h"

namespace minihv::tls {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// Sent in the clear in the ClientHello; the key is what authenticates, not this.
inline constexpr std::string_view kPskIdentity = "minihv psk v1";

struct Psk {
  keys::Secret key;  // a derived key (keys::derive), never the cluster key itself
  std::string identity = std::string(kPskIdentity);
};

enum class Role { kClient, kServer };

// Why a handshake failed, for a caller that answers differently (e.g. one plain-text error line to
// a plain-text client). The Status message says the same in words.
enum class Failure { kNone, kWrongKey, kNotTls, kTimeout, kClosed, kOther };

// Which directions the kernel encrypts/decrypts.
struct Offload {
  bool send = false;
  bool recv = false;
};

class Session {
public:
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  int fd() const;
  Role role() const;
  bool ktls_send() const { return offload().send; }
  bool ktls_recv() const { return offload().recv; }
  Offload offload() const;
  // "kernel TLS both ways", "kernel TLS send, user-space receive", "user-space TLS (no kernel TLS)".
  std::string describe() const;

  // Up to `n` decrypted bytes; 0 once the peer ended the stream with close_notify. A peer that
  // closed the TCP connection without close_notify is an error (the data may be truncated).
  // Waits at most until `deadline` (nullopt: as long as the fd blocks, or for ever if non-blocking);
  // on a blocking fd, a record that has begun to arrive is waited for whole.
  Result<size_t> read(void* buf, size_t n, std::optional<Deadline> deadline = std::nullopt);
  // Whether read() has bytes without the fd being readable (OpenSSL holds them). A loop that polls
  // the fd before reading must ask this first, or it can wait for bytes that are already here.
  bool has_pending() const;
  // Sends all of `bytes` (through the kernel with ktls_send()).
  Status write_all(std::string_view bytes, std::optional<Deadline> deadline = std::nullopt);
  // Sends close_notify (the peer's read() returns 0); does not wait for the peer's.
  Status shutdown();

  // Non-blocking I/O for a caller that polls the fd itself (a relay: migrate/relay.h). The fd
  // must be non-blocking, and the calling thread must have SIGPIPE blocked (OpenSSL writes
  // without MSG_NOSIGNAL). `bytes` moved; `end` once the peer sent close_notify (try_read);
  // `wants` the poll events to wait for on fd() before calling again when nothing moved.
  struct Moved {
    size_t bytes = 0;
    bool end = false;
    short wants = 0;
  };
  Result<Moved> try_read(void* buf, size_t n);
  // Writes at least one record when it moves anything. After `wants`, call again with the same
  // bytes (OpenSSL resumes the record it began).
  Result<Moved> try_write(const void* buf, size_t n);
  // shutdown() without waiting: close_notify goes out if the socket takes it now.
  void try_shutdown();

  struct Impl;

private:
  friend Result<Session> handshake(int, Role, const Psk&, Deadline, Failure*);
  friend class Handshake;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Runs the TLS 1.3 handshake on `fd` (a connected TCP socket, blocking or non-blocking; it is
// switched to non-blocking for the handshake and back after) until `deadline`. Errors name the
// cause: "the peer does not hold this cluster's key", "the peer does not speak TLS", the deadline,
// the peer closing; `why`, when given, receives the same as a Failure.
Result<Session> handshake(int fd, Role role, const Psk& psk, Deadline deadline, Failure* why = nullptr);

// Makes this process's TLS context for `role` now: OpenSSL 3 takes about 10 ms for it, once per
// process and role; afterwards every handshake reuses it. A listener calls it before it waits.
Status prepare(Role role);

// The same handshake driven by the caller's poll loop, so that one thread can hold many at once
// (the migration listener): poll the fd for events(), then step(). The fd must be non-blocking;
// the deadline is the caller's to keep.
class Handshake {
public:
  static Result<Handshake> start(int fd, Role role, const Psk& psk);
  ~Handshake();
  Handshake(Handshake&&) noexcept;
  Handshake& operator=(Handshake&&) noexcept;
  // Advances as far as the fd allows: true once done (then take the Session), false while it
  // waits for events(). Errors as handshake()'s.
  Result<bool> step(Failure* why = nullptr);
  short events() const { return events_; }
  Session take() &&;

private:
  explicit Handshake(std::unique_ptr<Session::Impl> impl);
  std::unique_ptr<Session::Impl> impl_;
  short events_;
};

}  // namespace minihv::tls
