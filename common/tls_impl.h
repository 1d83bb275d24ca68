// common/tls_impl.h — what tls.cc, tls_config.cc and tls_errors.cc share; not for other modules.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "common/tls.h"

namespace minihv::tls {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// What the PSK callbacks need and what they saw; the SSL's app data points here.
struct PskState {
  Psk psk;
  bool offered_psk = false;       // server: the client offered a PSK identity at all
  bool unknown_identity = false;  // server: ... but not ours
  std::string offered_identity;   // server: that identity, printable and cut short
};

struct Session::Impl {
  int fd = -1;
  Role role = Role::kClient;
  SslCtxPtr ctx;
  SslPtr ssl;
  PskState psk;
};

// tls_config.cc: a context for `role` with minihv's one configuration and the PSK callbacks.
Result<SslCtxPtr> make_context(Role role);
// tls_config.cc: an SSL on `impl->fd` whose callbacks find `impl->psk`.
Status attach_ssl(Session::Impl& impl);

// tls_errors.cc: why SSL_do_handshake returned `rc` (not WANT_*), in words and as a Failure.
Status handshake_error(const Session::Impl& impl, int rc, Failure& why);
// tls_errors.cc: why SSL_read/SSL_write returned `rc` (not WANT_*); `what` is "read" or "write".
Status io_error(SSL* ssl, int rc, const char* what);
// tls_errors.cc: the queued OpenSSL errors as one line (and clears them).
std::string openssl_errors();

}  // namespace minihv::tls
