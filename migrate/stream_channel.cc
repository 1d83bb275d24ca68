// The relay: one thread per TLS connection moving bytes between the lane's socketpair and the
// tls::Session, both directions, non-blocking, so the one SSL object has one user.
#include "migrate/stream_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/sandbox.h"
#include "migrate/transport.h"

namespace minihv::migrate {

namespace {

// Bytes a relay holds per direction: many TLS records per wake-up, one socketpair write.
constexpr size_t kRelayBuffer = 256u << 10;
// The socketpair's buffers: room for the lane's io_uring to run ahead of the relay thread.
constexpr int kPairBuffer = 4 << 20;
// Whether a lane's io_uring sends straight into a kTLS socket (plain buffers, gathered from guest
// RAM) while a receive-only relay reads the same socket. It was off while that stalled in the hw
// lane after ~54 MB: the relay, blocking in the socket for the next record, still held part of the
// last one (may_read() now forbids that). On since hw_lane and hw_lane_smp passed with it.
// Off: the relay does both directions, OpenSSL still writing through kTLS (one user per socket).
constexpr bool kLaneSendsThroughKtls = true;

// io_uring's socket operations on an O_NONBLOCK file end in -EAGAIN instead of waiting: a socket a
// lane uses must block. A relay that does both directions needs it non-blocking (one thread, one
// poll); one that does a single direction may block in it (its socket is then shared with the lane).
void set_blocking(int fd, bool blocking) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

}  // namespace

class Relay {
public:
  Relay(UniqueFd end, int tcp, tls::Session tls, bool send, bool recv)
      : end_(std::move(end)), tcp_(tcp), tls_(std::move(tls)), send_(send), recv_(recv) {
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    in_.resize(kRelayBuffer);
    out_.resize(kRelayBuffer);
    thread_ = std::thread([this] { run(); });
  }
  // The lane shut its ends: from now on the relay has kRelayDrain to send what it holds.
  void draining() {
    std::lock_guard lock(mu_);
    if (!drain_until_) drain_until_ = std::chrono::steady_clock::now() + kRelayDrain;
  }
  ~Relay() {
    draining();
    {
      std::unique_lock lock(mu_);
      done_cv_.wait_until(lock, *drain_until_, [&] { return done_; });
    }
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    ::shutdown(tcp_, SHUT_RDWR);  // a single-direction relay may be blocked in the socket
    thread_.join();
  }
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  std::string error() const {
    std::lock_guard lock(mu_);
    return error_;
  }

private:
  void run() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);  // OpenSSL writes without MSG_NOSIGNAL
    Status st = sandbox::enter(sandbox::ThreadClass::kMigration);
    if (st.is_ok()) st = loop();
    std::lock_guard lock(mu_);
    if (!st) error_ = st.message();
    done_ = true;
    done_cv_.notify_all();
    // A TLS failure ends both directions for the lane: it sees its socketpair close.
    if (!st) ::shutdown(end_.get(), SHUT_RDWR);
  }

  // Whether move_in may read now. On a blocking socket a read waits for the peer, who may be
  // waiting for what the relay still holds (STREAM_OPEN, a round's last pages): only with nothing
  // left to deliver, or with more already in OpenSSL's hands.
  bool may_read() const { return !tcp_blocks_ || in_len_ == 0 || tls_.has_pending(); }

  // TLS -> lane. Sets `wants` for the TCP socket, `pair` for the socketpair.
  Status move_in(bool& progress, short& tcp_wants, short& pair_wants) {
    while (!in_end_ && in_len_ < in_.size() && may_read()) {
      auto m = tls_.try_read(in_.data() + in_len_, in_.size() - in_len_);
      if (!m) return m.status();
      if (m->end) in_end_ = true;
      in_len_ += m->bytes;
      if (m->bytes == 0 && !m->end) {
        tcp_wants |= m->wants;
        break;
      }
      progress = true;
    }
    while (in_off_ < in_len_) {
      ssize_t n = ::send(end_.get(), in_.data() + in_off_, in_len_ - in_off_, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && would_block(errno)) {
        pair_wants |= POLLOUT;
        return Status::ok();
      }
      if (n < 0) {  // the lane shut its receiving side: nothing more to deliver
        recv_ = false;
        return Status::ok();
      }
      in_off_ += static_cast<size_t>(n);
      progress = true;
    }
    in_off_ = in_len_ = 0;
    if (in_end_) {
      ::shutdown(end_.get(), SHUT_WR);  // the peer's close_notify: the lane reads EOF
      recv_ = false;
    }
    return Status::ok();
  }

  // Lane -> TLS.
  Status move_out(bool& progress, short& tcp_wants, short& pair_wants) {
    while (true) {
      if (out_off_ == out_len_) {
        out_off_ = out_len_ = 0;
        if (out_end_) return finish_sending();
        ssize_t n = ::recv(end_.get(), out_.data(), out_.size(), MSG_DONTWAIT);
        if (n < 0 && would_block(errno)) {
          pair_wants |= POLLIN;
          return Status::ok();
        }
        if (n <= 0) {
          out_end_ = true;
          continue;
        }
        out_len_ = static_cast<size_t>(n);
        progress = true;
      }
      auto m = tls_.try_write(out_.data() + out_off_, out_len_ - out_off_);
      if (!m) return m.status();
      if (m->bytes == 0) {
        tcp_wants |= m->wants;
        return Status::ok();
      }
      out_off_ += m->bytes;
      progress = true;
    }
  }

  // The lane closed its end: a lane only does so as its session ends (both ways at once), so
  // nothing more is delivered to it either.
  Status finish_sending() {
    (void)tls_.try_shutdown();  // close_notify: the peer's lane reads EOF, not an error
    ::shutdown(tcp_, SHUT_WR);
    send_ = recv_ = false;
    return Status::ok();
  }

  Status loop() {
    tcp_blocks_ = !(send_ && recv_);
    set_blocking(tcp_, tcp_blocks_);
    set_blocking(end_.get(), false);
    while (send_ || recv_) {
      bool progress = false;
      short tcp_wants = 0, pair_wants = 0;
      if (recv_) MINIHV_TRY(first_error(move_in(progress, tcp_wants, pair_wants)));
      if (send_) {
        Status out = move_out(progress, tcp_wants, pair_wants);
        if (!out) stop_sending(std::move(out));
      }
      if (progress || (recv_ && tls_.has_pending() && in_len_ < in_.size())) continue;
      if (!send_ && !recv_) break;
      pollfd p[3] = {{tcp_, tcp_wants, 0}, {end_.get(), pair_wants, 0}, {stop_.get(), POLLIN, 0}};
      if (::poll(p, 3, -1) < 0 && errno != EINTR) return Status::from_errno("relay poll");
      if (p[2].revents) return Status::ok();
      // Readiness errors come back from the next read or write.
    }
    return sending_error_;
  }

  // The peer took no more (it closed, a TLS error): the lane's sends fail from now on, but what the
  // peer sent before it closed — an ABORT saying why — still reaches the lane, then the error.
  void stop_sending(Status why) {
    sending_error_ = std::move(why);
    send_ = false;
    ::shutdown(end_.get(), SHUT_RD);
  }
  // A receive failing after the send did: the send's error is the one that says why.
  Status first_error(Status st) const { return (st || sending_error_) ? st : sending_error_; }

  UniqueFd end_;
  int tcp_;
  tls::Session tls_;
  bool send_, recv_;
  bool tcp_blocks_ = false;  // a single-direction relay: its reads wait in the socket
  UniqueFd stop_;
  std::vector<uint8_t> in_, out_;
  size_t in_len_ = 0, in_off_ = 0, out_len_ = 0, out_off_ = 0;
  bool in_end_ = false, out_end_ = false;
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::optional<std::chrono::steady_clock::time_point> drain_until_;
  std::string error_;
  Status sending_error_ = Status::ok();
  std::thread thread_;
};

StreamChannel StreamChannel::plain(UniqueFd tcp) {
  StreamChannel c;
  c.tcp_ = std::move(tcp);
  return c;
}

Result<StreamChannel> StreamChannel::secure(UniqueFd tcp, tls::Session tls) {
  StreamChannel c;
  c.tls_text_ = tls.describe();
  const tls::Offload o = tls.offload();
  c.relay_send_ = !(o.send && kLaneSendsThroughKtls);
  c.relay_recv_ = !o.recv;
  c.tcp_ = std::move(tcp);
  set_blocking(c.tcp_.get(), true);
  if (!c.relay_send_ && !c.relay_recv_) {  // the kernel does both: the socket is the lane's
    c.kernel_only_.emplace(std::move(tls));
    return c;
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return Status::from_errno("socketpair");
  c.lane_.reset(pair[0]);
  UniqueFd relay_end(pair[1]);
  for (int fd : pair) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kPairBuffer, sizeof kPairBuffer);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kPairBuffer, sizeof kPairBuffer);
  }
  c.relay_ = std::make_unique<Relay>(std::move(relay_end), c.tcp_.get(), std::move(tls), c.relay_send_,
                                     c.relay_recv_);
  return c;
}

Result<tls::Psk> migration_psk(const keys::Secret& file_key) {
  auto k = keys::derive(file_key, keys::migration_label(kMigrationStreamLabel));
  if (!k) return k.status();
  return tls::Psk{*k};
}

Result<std::vector<StreamChannel>> secure_all(std::vector<UniqueFd> fds, const tls::Psk& psk, tls::Deadline deadline,
                                        double* took_ms) {
  const auto start = tls::Clock::now();
  std::vector<std::optional<tls::Handshake>> hs(fds.size());
  std::vector<std::optional<tls::Session>> done(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) {
    set_blocking(fds[i].get(), false);
    auto h = tls::Handshake::start(fds[i].get(), tls::Role::kClient, psk);
    if (!h) return h.status();
    hs[i].emplace(std::move(h).value());
  }
  for (size_t left = fds.size(); left > 0;) {
    std::vector<pollfd> p;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!hs[i]) continue;
      auto finished = hs[i]->step();
      if (!finished) return finished.status();
      if (*finished) {
        done[i].emplace(std::move(*hs[i]).take());
        hs[i].reset();
        --left;
        continue;
      }
      p.push_back({fds[i].get(), hs[i]->events(), 0});
    }
    if (left == 0) break;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - tls::Clock::now()).count();
    if (ms <= 0) return Status::error("TLS handshake: not finished in time (the peer is silent or too slow)");
    if (::poll(p.data(), p.size(), static_cast<int>(ms)) < 0 && errno != EINTR) return Status::from_errno("poll");
  }
  if (took_ms) *took_ms = std::chrono::duration<double, std::milli>(tls::Clock::now() - start).count();
  std::vector<StreamChannel> out;
  for (size_t i = 0; i < fds.size(); ++i) {
    auto c = StreamChannel::secure(std::move(fds[i]), std::move(*done[i]));
    if (!c) return c.status();
    out.push_back(std::move(c).value());
  }
  return out;
}

void StreamChannel::close_lane() {
  ::shutdown(send_fd(), SHUT_RDWR);
  if (recv_fd() != send_fd()) ::shutdown(recv_fd(), SHUT_RDWR);
  if (relay_) relay_->draining();
}

StreamChannel::~StreamChannel() {
  // The relay first: it uses the TCP socket.
  if (relay_) close_lane();
  relay_.reset();
}
StreamChannel::StreamChannel(StreamChannel&&) noexcept = default;
StreamChannel& StreamChannel::operator=(StreamChannel&&) noexcept = default;

int StreamChannel::send_fd() const { return relay_send_ ? lane_.get() : tcp_.get(); }
int StreamChannel::recv_fd() const { return relay_recv_ ? lane_.get() : tcp_.get(); }
int StreamChannel::send_flags() const {
  const bool kernel_tls_send = !tls_text_.empty() && !relay_send_;
  return kernel_tls_send ? MSG_NOSIGNAL : MSG_NOSIGNAL | MSG_WAITALL;
}
std::string StreamChannel::relay_error() const { return relay_ ? relay_->error() : std::string(); }

}  // namespace minihv::migrate
