// common/keys.h — the cluster key and the keys derived from it.
//
// A cluster key is 32 random bytes, kept hex-encoded (64 hex digits and a newline) in a file of mode
// 0600 owned by the user that runs minihv, one file per node, never on the shared volume. No channel
// is keyed with it directly: each purpose gets its own key, HKDF-SHA256(cluster key, label), so one
// secret never keys two channels (node RPC and each live move have different keys).
//
// Owns: making, writing, reading and checking key files; the derivation and its labels.
// Must not know: TLS (common/tls.h takes a derived key), where a node keeps its file (the CLI's).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace minihv::keys {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kKeyHexChars = 2 * kKeyBytes;

// 32 secret bytes, wiped when destroyed.
class Secret {
public:
  Secret() = default;
  explicit Secret(std::span<const uint8_t, kKeyBytes> bytes);
  ~Secret();
  Secret(const Secret& o) : Secret(std::span<const uint8_t, kKeyBytes>(o.bytes_)) {}
  Secret& operator=(const Secret& o);

  std::span<const uint8_t, kKeyBytes> bytes() const { return bytes_; }
  std::span<uint8_t, kKeyBytes> mutable_bytes() { return bytes_; }
  bool operator==(const Secret& o) const;  // constant time

private:
  std::array<uint8_t, kKeyBytes> bytes_{};
};

// Labels of the derived keys. A new use gets a new label; a change of format bumps the version.
inline constexpr std::string_view kNodeRpcLabel = "minihv node-rpc v1";
// Pacemaker's side: the per-host receiver of incoming VMs (pcmk/receiver.h).
inline constexpr std::string_view kReceiverRpcLabel = "minihv pcmk-receiver v1";
// The key of one live move; `move_id` is minted by the destination for that move.
std::string migration_label(std::string_view move_id);

// 32 bytes from the OpenSSL CSPRNG.
Result<Secret> random_secret();
// HKDF-SHA256 with no salt (the cluster key is already uniform): `out` from `ikm` and `info`.
Status hkdf_sha256(std::span<const uint8_t> ikm, std::string_view info, std::span<uint8_t> out);
// The key for `label`, derived from the cluster key.
Result<Secret> derive(const Secret& cluster_key, std::string_view label);

// The file's text: 64 lowercase hex digits and '\n'.
std::string to_text(const Secret& key);
// The inverse; accepts 64 hex digits of either case and at most one trailing '\n', nothing else.
// Errors say what is wrong without quoting the content (it may be a secret).
Result<Secret> parse_text(std::string_view text);

// Creates a new random key file at `path`: parent directories that do not exist are made with mode
// 0700; the file appears complete (written to a temporary file, then linked) with mode 0600. Refuses
// when `path` exists: a cluster's key is never replaced by accident.
Result<Secret> write_new_key(const std::string& path);
// The same for a given key (e.g. a move's key, derived, handed to the process that needs it).
Status write_key(const std::string& path, const Secret& key);
// Reads and checks a key file: a regular file owned by this user, no permission for group or
// others, the right size and format. Every error names `path` and how to fix it.
Result<Secret> read_key(const std::string& path);

}  // namespace minihv::keys
