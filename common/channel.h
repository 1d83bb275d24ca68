// common/channel.h — one connected stream a line protocol runs over: a plain socket, or a TLS
// session on one (common/tls.h). common/jsonl.h reads and writes through it and never asks which.
//
// Owns: turning "read some bytes / write these bytes" into the plain or the TLS call, and saying
// whether bytes are already here without the fd being readable (TLS holds decrypted bytes).
// Must not know: what the bytes mean, where the key came from, who closes the fd (never a Channel).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string_view>

#include "common/status.h"
#include "common/tls.h"

namespace minihv {

class Channel {
public:
  using Deadline = std::chrono::steady_clock::time_point;
  virtual ~Channel() = default;
  virtual int fd() const = 0;
  virtual bool is_tls() const = 0;
  // Up to `n` bytes; 0 when the peer ended the stream. Waits at most until `deadline` for a byte
  // (nullopt: as long as the fd blocks).
  virtual Result<size_t> read_some(void* buf, size_t n, std::optional<Deadline> deadline) = 0;
  // Bytes read_some() has without the fd being readable. A loop that polls the fd before reading
  // asks this first, or it can wait for bytes that are already here.
  virtual bool has_pending() const = 0;
  virtual Status write_all(std::string_view bytes) = 0;
};

// A plain socket (the fd stays the caller's). Writes never raise SIGPIPE.
class PlainChannel final : public Channel {
public:
  explicit PlainChannel(int fd) : fd_(fd) {}
  int fd() const override { return fd_; }
  bool is_tls() const override { return false; }
  Result<size_t> read_some(void* buf, size_t n, std::optional<Deadline> deadline) override;
  bool has_pending() const override { return false; }
  Status write_all(std::string_view bytes) override;

private:
  int fd_;
};

// A TLS session after its handshake. A write that the peer does not take in within
// `write_timeout` (when given) fails: a blocking fd's SO_SNDTIMEO does not bound OpenSSL's wait.
class TlsChannel final : public Channel {
public:
  explicit TlsChannel(tls::Session session, std::optional<std::chrono::milliseconds> write_timeout = std::nullopt)
      : session_(std::move(session)), write_timeout_(write_timeout) {}
  int fd() const override { return session_.fd(); }
  bool is_tls() const override { return true; }
  Result<size_t> read_some(void* buf, size_t n, std::optional<Deadline> deadline) override;
  bool has_pending() const override { return session_.has_pending(); }
  Status write_all(std::string_view bytes) override;
  tls::Session& session() { return session_; }

private:
  tls::Session session_;
  std::optional<std::chrono::milliseconds> write_timeout_;
};

}  // namespace minihv
