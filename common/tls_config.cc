// minihv's one TLS configuration and the external-PSK callbacks of both sides.
#include <algorithm>
#include <cctype>
#include <mutex>

#include "common/tls_impl.h"

namespace minihv::tls {
namespace {

// TLS_AES_128_GCM_SHA256 (RFC 8446 B.4): the suite every kTLS kernel offloads, and AES-NI fast.
constexpr unsigned char kSuiteId[] = {0x13, 0x01};
constexpr const char* kSuiteName = "TLS_AES_128_GCM_SHA256";
constexpr size_t kShownIdentity = 64;  // of a stranger's identity, in messages

PskState& state_of(SSL* ssl) { return *static_cast<PskState*>(SSL_get_app_data(ssl)); }

// A resumable-looking session that carries the external PSK (the way OpenSSL takes one).
SSL_SESSION* psk_session(SSL* ssl, const keys::Secret& key) {
  const SSL_CIPHER* suite = SSL_CIPHER_find(ssl, kSuiteId);
  SSL_SESSION* s = SSL_SESSION_new();
  if (!suite || !s) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  if (!SSL_SESSION_set1_master_key(s, key.bytes().data(), key.bytes().size()) ||
      !SSL_SESSION_set_cipher(s, suite) || !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

// Client: offer our identity with the PSK. Returns 0 (abort the handshake) only on an internal error.
int use_psk(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len, SSL_SESSION** sess) {
  const PskState& st = state_of(ssl);
  SSL_SESSION* s = psk_session(ssl, st.psk.key);
  if (!s) return 0;
  if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
    SSL_SESSION_free(s);  // a retry with another hash: our PSK does not fit it, offer none
    *sess = nullptr;
    return 1;
  }
  *id = reinterpret_cast<const unsigned char*>(st.psk.identity.data());
  *id_len = st.psk.identity.size();
  *sess = s;
  return 1;
}

std::string printable(const unsigned char* p, size_t n) {
  std::string out(reinterpret_cast<const char*>(p), std::min(n, kShownIdentity));
  std::replace_if(out.begin(), out.end(), [](unsigned char c) { return !std::isprint(c); }, '?');
  return n > kShownIdentity ? out + "..." : out;
}

// Server: the client's identity must be ours; the binder (checked by OpenSSL next) proves the key.
int find_psk(SSL* ssl, const unsigned char* id, size_t id_len, SSL_SESSION** sess) {
  PskState& st = state_of(ssl);
  st.offered_psk = true;
  *sess = nullptr;
  const std::string_view offered(reinterpret_cast<const char*>(id), id_len);
  if (offered != st.psk.identity) {
    st.unknown_identity = true;
    st.offered_identity = printable(id, id_len);
    return 1;  // no PSK: with no certificate either, the handshake fails
  }
  *sess = psk_session(ssl, st.psk.key);
  return *sess ? 1 : 0;
}

Status configure(SSL_CTX* ctx, Role role) {
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) || !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(ctx, kSuiteName))
    return Status::error("TLS configuration: " + openssl_errors());
  // No tickets: nothing to resume (every connection has the PSK) and no post-handshake record that
  // a kTLS receiver would have to handle.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS | SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (role == Role::kClient)
    SSL_CTX_set_psk_use_session_callback(ctx, use_psk);
  else
    SSL_CTX_set_psk_find_session_callback(ctx, find_psk);
  return Status::ok();
}

Result<SslCtxPtr> new_context(Role role) {
  SslCtxPtr ctx(SSL_CTX_new(role == Role::kClient ? TLS_client_method() : TLS_server_method()));
  if (!ctx) return Status::error("TLS context: " + openssl_errors());
  MINIHV_TRY(configure(ctx.get(), role));
  return ctx;
}

}  // namespace

// One context per role for the process, made at first use: OpenSSL 3's SSL_CTX_new costs about
// 10 ms (it fetches every algorithm), which a migration would pay per stream and a listener per
// connection (an idle flood could then starve it). The context holds no key: the PSK lives in each
// SSL's app data, so one context serves every connection and thread (OpenSSL allows SSL_new on a
// shared, no longer changed context).
Result<SslCtxPtr> make_context(Role role) {
  struct Shared {
    std::once_flag once;
    SslCtxPtr ctx;
    Status error;
  };
  static Shared client, server;
  Shared& s = role == Role::kClient ? client : server;
  std::call_once(s.once, [&] {
    auto ctx = new_context(role);
    if (ctx) s.ctx = std::move(ctx).value();
    else s.error = ctx.status();
  });
  if (!s.ctx) return s.error;
  SSL_CTX_up_ref(s.ctx.get());
  return SslCtxPtr(s.ctx.get());
}

Status attach_ssl(Session::Impl& impl) {
  impl.ssl.reset(SSL_new(impl.ctx.get()));
  if (!impl.ssl) return Status::error("TLS connection: " + openssl_errors());
  SSL* ssl = impl.ssl.get();
  // SSL_set_fd makes a socket BIO that never closes the fd: it stays the caller's.
  if (!SSL_set_fd(ssl, impl.fd) || !SSL_set_app_data(ssl, &impl.psk))
    return Status::error("TLS connection: " + openssl_errors());
  if (impl.role == Role::kClient)
    SSL_set_connect_state(ssl);
  else
    SSL_set_accept_state(ssl);
  return Status::ok();
}

}  // namespace minihv::tls
