// Why a TLS handshake or transfer failed, in words a user can act on.
#include <openssl/err.h>

#include <cerrno>
#include <cstring>

#include "common/tls_impl.h"

namespace minihv::tls {
namespace {

constexpr const char* kWrongKey = "TLS handshake: the peer does not hold this cluster's key";

int last_reason() {
  const unsigned long e = ERR_peek_last_error();
  return e ? ERR_GET_REASON(e) : 0;
}

// What a TLS stack reports when the first bytes are not a TLS record.
bool not_tls(int reason) {
  switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_BAD_RECORD_TYPE:
    case SSL_R_UNEXPECTED_RECORD:
      return true;
    default:
      return false;
  }
}

// The server's wrong-key cases, or "" when `reason` is none of them.
std::string server_wrong_key(const PskState& st, int reason) {
  if (st.unknown_identity)
    return "it offered PSK identity '" + st.offered_identity + "', this side knows '" + st.psk.identity + "'";
  if (reason == SSL_R_BINDER_DOES_NOT_VERIFY) return "its PSK binder does not verify with our key";
  // Without a PSK this server has nothing to authenticate with (it has no certificate).
  if (!st.offered_psk && (reason == SSL_R_NO_SHARED_CIPHER || reason == SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM))
    return "it offered no pre-shared key";
  return "";
}

// The client's: the alert the server answered our PSK with (OpenSSL 3.0's server sends
// illegal_parameter for a binder that does not verify, handshake_failure for an unknown identity).
std::string client_wrong_key(const PskState& st, int reason) {
  switch (reason) {
    case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
      return "it refused our PSK binder";
    case SSL_R_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return "it refused our PSK identity '" + st.psk.identity + "'";
    default:
      return "";
  }
}

std::string wrong_key_detail(const Session::Impl& impl, int reason) {
  return impl.role == Role::kServer ? server_wrong_key(impl.psk, reason) : client_wrong_key(impl.psk, reason);
}

bool peer_closed(int ssl_error, int reason) {
  return ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN ||
         reason == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

std::string closed_detail(int err) {
  return err && err != EAGAIN ? std::string(": ") + std::strerror(err) : std::string();
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

Status handshake_error(const Session::Impl& impl, int rc, Failure& why) {
  const int saved_errno = errno;
  const int ssl_error = SSL_get_error(impl.ssl.get(), rc);
  const int reason = ssl_error == SSL_ERROR_SSL ? last_reason() : 0;
  if (std::string key = wrong_key_detail(impl, reason); !key.empty()) {
    why = Failure::kWrongKey;
    return Status::error(std::string(kWrongKey) + " (" + key + ": " + openssl_errors() + ")");
  }
  if (not_tls(reason)) {
    why = Failure::kNotTls;
    return Status::error("TLS handshake: the peer does not speak TLS (a plain-text client or server, or "
                         "another protocol): " + openssl_errors());
  }
  if (peer_closed(ssl_error, reason)) {
    why = Failure::kClosed;
    ERR_clear_error();
    return Status::error("TLS handshake: the peer closed the connection before the handshake ended" +
                         closed_detail(saved_errno));
  }
  why = Failure::kOther;
  return Status::error("TLS handshake failed: " + openssl_errors());
}

Status io_error(SSL* ssl, int rc, const char* what) {
  const int saved_errno = errno;
  const int ssl_error = SSL_get_error(ssl, rc);
  const int reason = ssl_error == SSL_ERROR_SSL ? last_reason() : 0;
  if (peer_closed(ssl_error, reason)) {
    ERR_clear_error();
    const bool reading = std::strcmp(what, "read") == 0;
    return Status::error(std::string("TLS ") + what + ": the peer closed the connection" +
                         (reading ? " without TLS close_notify (what it sent may be cut short)" : "") +
                         closed_detail(saved_errno));
  }
  return Status::error(std::string("TLS ") + what + ": " + openssl_errors());
}

}  // namespace minihv::tls
