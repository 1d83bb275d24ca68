// Secrets, their derivation and their text form (key_file.cc reads and writes the files).
#include "common/keys.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <memory>

namespace minihv::keys {

Secret::Secret(std::span<const uint8_t, kKeyBytes> bytes) {
  std::copy(bytes.begin(), bytes.end(), bytes_.begin());
}

Secret::~Secret() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

Secret& Secret::operator=(const Secret& o) {
  bytes_ = o.bytes_;
  return *this;
}

bool Secret::operator==(const Secret& o) const {
  return CRYPTO_memcmp(bytes_.data(), o.bytes_.data(), bytes_.size()) == 0;
}

std::string migration_label(std::string_view move_id) {
  return "minihv migration v1 " + std::string(move_id);
}

namespace {

std::string openssl_error() {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  return buf;
}

struct KdfCtxDeleter {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<Secret> random_secret() {
  Secret s;
  if (RAND_bytes(s.mutable_bytes().data(), static_cast<int>(kKeyBytes)) != 1)
    return Status::error("no random bytes from OpenSSL: " + openssl_error());
  return s;
}

Status hkdf_sha256(std::span<const uint8_t> ikm, std::string_view info, std::span<uint8_t> out) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (!kdf) return Status::error("OpenSSL has no HKDF: " + openssl_error());
  std::unique_ptr<EVP_KDF_CTX, KdfCtxDeleter> ctx(EVP_KDF_CTX_new(kdf));
  EVP_KDF_free(kdf);
  if (!ctx) return Status::error("HKDF context: " + openssl_error());
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.data()), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end()};
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1)
    return Status::error("HKDF-SHA256: " + openssl_error());
  return Status::ok();
}

Result<Secret> derive(const Secret& cluster_key, std::string_view label) {
  Secret out;
  MINIHV_TRY(hkdf_sha256(cluster_key.bytes(), label, out.mutable_bytes()));
  return out;
}

std::string to_text(const Secret& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(kKeyHexChars + 1);
  for (uint8_t b : key.bytes()) {
    text.push_back(kHex[b >> 4]);
    text.push_back(kHex[b & 0xf]);
  }
  text.push_back('\n');
  return text;
}

Result<Secret> parse_text(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (text.size() != kKeyHexChars)
    return Status::invalid("a key is " + std::to_string(kKeyHexChars) + " hex digits and a newline; this holds " +
                           std::to_string(text.size()) + " characters before its end");
  Secret s;
  auto bytes = s.mutable_bytes();
  for (size_t i = 0; i < kKeyBytes; ++i) {
    int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return Status::invalid("a key holds only hex digits; character " + std::to_string(2 * i + (hi < 0 ? 1 : 2)) +
                             " is not one");
    bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return s;
}

}  // namespace minihv::keys
