// The handshake under a deadline, and reading/writing through a Session.
#include "common/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>

#include <climits>

#include "common/tls_impl.h"

namespace minihv::tls {
namespace {

using std::chrono::milliseconds;

// O_NONBLOCK on `fd` for the guard's life, the caller's flags back after.
class NonBlocking {
public:
  explicit NonBlocking(int fd) : fd_(fd), flags_(::fcntl(fd, F_GETFL)) {
    if (changes()) ::fcntl(fd_, F_SETFL, flags_ | O_NONBLOCK);
  }
  ~NonBlocking() {
    if (changes()) ::fcntl(fd_, F_SETFL, flags_);
  }
  NonBlocking(const NonBlocking&) = delete;
  NonBlocking& operator=(const NonBlocking&) = delete;

private:
  bool changes() const { return flags_ >= 0 && !(flags_ & O_NONBLOCK); }
  int fd_, flags_;
};

// OpenSSL writes with write()/sendmsg() without MSG_NOSIGNAL: a peer gone would raise SIGPIPE.
// This thread blocks it while OpenSSL writes and takes back one that the write raised.
class NoSigpipe {
public:
  NoSigpipe() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~NoSigpipe() {
    if (!was_pending_) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      const timespec now{0, 0};
      while (sigtimedwait(&pipe, nullptr, &now) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  NoSigpipe(const NoSigpipe&) = delete;
  NoSigpipe& operator=(const NoSigpipe&) = delete;

private:
  sigset_t old_;
  bool was_pending_ = false;
};

// Waits for `events` on `fd`; false when `deadline` came first (nullopt: no deadline).
Result<bool> wait_ready(int fd, short events, std::optional<Deadline> deadline) {
  while (true) {
    int timeout = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<milliseconds>(*deadline - Clock::now()).count();
      if (left <= 0) return false;
      timeout = static_cast<int>(std::min<long long>(left, INT_MAX));
    }
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, timeout);
    if (n > 0) return true;  // ready, or POLLERR/POLLHUP, which the next SSL call reports
    if (n < 0 && errno != EINTR) return Status::from_errno("poll");
  }
}

bool wants_io(int ssl_error) { return ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE; }
short events_for(int ssl_error) { return ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN; }

// After SSL_ERROR_WANT_*: waits for the fd, or says what timed out.
Status await(int fd, int ssl_error, std::optional<Deadline> deadline, const char* what) {
  auto ready = wait_ready(fd, events_for(ssl_error), deadline);
  if (!ready) return ready.status();
  if (!*ready) return Status::error(std::string("TLS ") + what + ": the peer made no progress before the deadline");
  return Status::ok();
}

Status run_handshake(Session::Impl& impl, Deadline deadline, Failure& why) {
  const auto start = Clock::now();
  NonBlocking nb(impl.fd);
  NoSigpipe no_sigpipe;
  while (true) {
    ERR_clear_error();
    const int rc = SSL_do_handshake(impl.ssl.get());
    if (rc == 1) return Status::ok();
    const int ssl_error = SSL_get_error(impl.ssl.get(), rc);
    if (!wants_io(ssl_error)) return handshake_error(impl, rc, why);
    auto ready = wait_ready(impl.fd, events_for(ssl_error), deadline);
    if (!ready) return ready.status();
    if (!*ready) {
      why = Failure::kTimeout;
      return Status::error("TLS handshake: not finished within " +
                           std::to_string(std::chrono::round<milliseconds>(deadline - start).count()) +
                           " ms (the peer is silent or too slow: is it a minihv TLS peer?)");
    }
  }
}

}  // namespace

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

int Session::fd() const { return impl_->fd; }
Role Session::role() const { return impl_->role; }

Offload Session::offload() const {
  SSL* ssl = impl_->ssl.get();
  return {BIO_get_ktls_send(SSL_get_wbio(ssl)) != 0, BIO_get_ktls_recv(SSL_get_rbio(ssl)) != 0};
}

std::string Session::describe() const {
  const Offload o = offload();
  if (o.send && o.recv) return "kernel TLS both ways";
  if (o.send) return "kernel TLS send, user-space receive";
  if (o.recv) return "user-space send, kernel TLS receive";
  return "user-space TLS (no kernel TLS)";
}

bool Session::has_pending() const { return SSL_has_pending(impl_->ssl.get()) == 1; }

Result<size_t> Session::read(void* buf, size_t n, std::optional<Deadline> deadline) {
  SSL* ssl = impl_->ssl.get();
  // A blocking fd would wait inside SSL_read past the deadline: wait for bytes first.
  if (deadline && !has_pending()) MINIHV_TRY(await(impl_->fd, SSL_ERROR_WANT_READ, deadline, "read"));
  while (true) {
    size_t got = 0;
    ERR_clear_error();
    const int rc = SSL_read_ex(ssl, buf, n, &got);
    if (rc == 1) return got;
    const int ssl_error = SSL_get_error(ssl, rc);
    if (ssl_error == SSL_ERROR_ZERO_RETURN) return size_t{0};
    if (!wants_io(ssl_error)) return io_error(ssl, rc, "read");
    MINIHV_TRY(await(impl_->fd, ssl_error, deadline, "read"));
  }
}

Status Session::write_all(std::string_view bytes, std::optional<Deadline> deadline) {
  SSL* ssl = impl_->ssl.get();
  NoSigpipe no_sigpipe;
  while (!bytes.empty()) {
    size_t put = 0;
    ERR_clear_error();
    const int rc = SSL_write_ex(ssl, bytes.data(), bytes.size(), &put);
    if (rc == 1) {
      bytes.remove_prefix(put);
      continue;
    }
    const int ssl_error = SSL_get_error(ssl, rc);
    if (!wants_io(ssl_error)) return io_error(ssl, rc, "write");
    MINIHV_TRY(await(impl_->fd, ssl_error, deadline, "write"));
  }
  return Status::ok();
}

Status Session::shutdown() {
  SSL* ssl = impl_->ssl.get();
  NoSigpipe no_sigpipe;
  while (true) {
    ERR_clear_error();
    const int rc = SSL_shutdown(ssl);
    if (rc >= 0) return Status::ok();  // 0: ours sent, the peer's not yet read (we do not wait for it)
    const int ssl_error = SSL_get_error(ssl, rc);
    if (!wants_io(ssl_error)) return io_error(ssl, rc, "shutdown");
    MINIHV_TRY(await(impl_->fd, ssl_error, std::nullopt, "shutdown"));
  }
}

Result<Session::Moved> Session::try_read(void* buf, size_t n) {
  SSL* ssl = impl_->ssl.get();
  size_t got = 0;
  ERR_clear_error();
  const int rc = SSL_read_ex(ssl, buf, n, &got);
  if (rc == 1) return Moved{got, false, 0};
  const int ssl_error = SSL_get_error(ssl, rc);
  if (ssl_error == SSL_ERROR_ZERO_RETURN) return Moved{0, true, 0};
  if (!wants_io(ssl_error)) return io_error(ssl, rc, "read");
  return Moved{0, false, events_for(ssl_error)};
}

Result<Session::Moved> Session::try_write(const void* buf, size_t n) {
  SSL* ssl = impl_->ssl.get();
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  size_t put = 0;
  ERR_clear_error();
  const int rc = SSL_write_ex(ssl, buf, n, &put);
  if (rc == 1) return Moved{put, false, 0};
  const int ssl_error = SSL_get_error(ssl, rc);
  if (!wants_io(ssl_error)) return io_error(ssl, rc, "write");
  return Moved{0, false, events_for(ssl_error)};
}

void Session::try_shutdown() {
  ERR_clear_error();
  (void)SSL_shutdown(impl_->ssl.get());
  ERR_clear_error();
}

namespace {

Result<std::unique_ptr<Session::Impl>> new_impl(int fd, Role role, const Psk& psk) {
  auto impl = std::make_unique<Session::Impl>();
  impl->fd = fd;
  impl->role = role;
  impl->psk.psk = psk;
  auto ctx = make_context(role);
  if (!ctx) return ctx.status();
  impl->ctx = std::move(ctx).value();
  MINIHV_TRY(attach_ssl(*impl));
  return impl;
}

}  // namespace

Handshake::Handshake(std::unique_ptr<Session::Impl> impl) : impl_(std::move(impl)), events_(POLLIN) {}

Status prepare(Role role) {
  auto ctx = make_context(role);
  return ctx ? Status::ok() : ctx.status();
}

Handshake::~Handshake() = default;
Handshake::Handshake(Handshake&&) noexcept = default;
Handshake& Handshake::operator=(Handshake&&) noexcept = default;

Result<Handshake> Handshake::start(int fd, Role role, const Psk& psk) {
  auto impl = new_impl(fd, role, psk);
  if (!impl) return impl.status();
  Handshake h(std::move(impl).value());
  h.events_ = role == Role::kClient ? POLLOUT : POLLIN;
  return h;
}

Result<bool> Handshake::step(Failure* why) {
  Failure ignored;
  Failure& out = why ? *why : ignored;
  out = Failure::kNone;
  NoSigpipe no_sigpipe;
  ERR_clear_error();
  const int rc = SSL_do_handshake(impl_->ssl.get());
  if (rc == 1) return true;
  const int ssl_error = SSL_get_error(impl_->ssl.get(), rc);
  if (!wants_io(ssl_error)) return handshake_error(*impl_, rc, out);
  events_ = events_for(ssl_error);
  return false;
}

Session Handshake::take() && { return Session(std::move(impl_)); }

Result<Session> handshake(int fd, Role role, const Psk& psk, Deadline deadline, Failure* why) {
  Failure ignored;
  Failure& out = why ? *why : ignored;
  out = Failure::kOther;
  auto impl = new_impl(fd, role, psk);
  if (!impl) return impl.status();
  MINIHV_TRY(run_handshake(**impl, deadline, out));
  out = Failure::kNone;
  return Session(std::move(impl).value());
}

}  // namespace minihv::tls
