// migrate/stream_channel.h — one migration connection after its TLS handshake, as the fds a lane's
// io_uring sends and receives on (module-internal: transport.cc, listener.cc, in_doubt.cc).
//
// Owns: the TCP socket and its tls::Session; for each direction the kernel does not encrypt
// (tls::Session::offload), a relay: a socketpair whose one end the lane uses with plain bytes, and
// ONE thread per connection that moves bytes between the other end and the tls::Session with
// non-blocking reads and writes (an SSL object is never used by two threads). Where the kernel
// does a direction (kTLS), the lane uses the TCP socket itself for it: plain buffers, scatter-
// gather from guest RAM, no copy. A plain channel (--insecure) is the TCP socket both ways.
// Must not know: frames, sessions, streams.
//
// Ending: close_lane() shuts the lane's fds (shutdown(2)); the relay then sends what the lane
// wrote, close_notify, and ends. The destructor waits for that until kRelayDrain after
// close_lane() (a session closes every lane first, so its relays drain at once), then stops it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "common/tls.h"

namespace minihv::migrate {

// How long a closing channel's relay may take to hand what the lane wrote to TLS.
inline constexpr std::chrono::milliseconds kRelayDrain{2000};

class Relay;
class StreamChannel;

// The client handshakes of `fds` (connected TCP sockets), all at once from one poll loop, until
// `deadline`; the first failure fails all (its message says why). `took_ms`: the wall time.
Result<std::vector<StreamChannel>> secure_all(std::vector<UniqueFd> fds, const tls::Psk& psk, tls::Deadline deadline,
                                        double* took_ms = nullptr);

class StreamChannel {
public:
  // Plain TCP (only with --insecure).
  static StreamChannel plain(UniqueFd tcp);
  // TLS: `tls` runs over `tcp`; starts the relay for the directions the kernel does not do.
  static Result<StreamChannel> secure(UniqueFd tcp, tls::Session tls);
  ~StreamChannel();
  StreamChannel(StreamChannel&&) noexcept;
  StreamChannel& operator=(StreamChannel&&) noexcept;

  int send_fd() const;
  int recv_fd() const;
  // The flags for a sendmsg on send_fd(): MSG_WAITALL (io_uring retries short sends) except where
  // the kernel encrypts — kTLS's sendmsg refuses MSG_WAITALL with EOPNOTSUPP (Linux 6.1), and the
  // lane resumes a short send itself.
  int send_flags() const;
  // The lane is done with the channel both ways; the relay drains (see above).
  void close_lane();
  int tcp_fd() const { return tcp_.get(); }
  // "" for plain TCP; else tls::Session::describe() ("user-space TLS (no kernel TLS)", ...).
  const std::string& tls() const { return tls_text_; }
  // Why the relay stopped early (a TLS error), "" while it runs or when it ended cleanly.
  std::string relay_error() const;

private:
  StreamChannel() = default;
  UniqueFd tcp_;
  UniqueFd lane_;  // the lane's end of the relay's socketpair (invalid: no relay)
  bool relay_send_ = false, relay_recv_ = false;
  std::unique_ptr<Relay> relay_;
  std::optional<tls::Session> kernel_only_;  // kTLS both ways: the session, kept for its life
  std::string tls_text_;
};

}  // namespace minihv::migrate
