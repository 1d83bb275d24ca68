// Key files: written once (never replaced), read only when nobody else could have read or changed them.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <openssl/crypto.h>

#include "common/fd.h"
#include "common/keys.h"

namespace minihv::keys {
namespace {

constexpr mode_t kDirMode = 0700;
constexpr mode_t kFileMode = 0600;
constexpr mode_t kOthersBits = S_IRWXG | S_IRWXO;

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%03o", static_cast<unsigned>(mode & 0777));
  return buf;
}

// mkdir -p with mode 0700 for what it creates; existing directories are left as they are.
Status make_parent_dirs(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::filesystem::path at;
  for (const auto& part : parent) {
    at /= part;
    if (::mkdir(at.c_str(), kDirMode) != 0 && errno != EEXIST)
      return Status::from_errno("cannot create directory " + at.string() + " for key file " + path);
  }
  return Status::ok();
}

Status write_all_fd(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::from_errno("write");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

// A complete temporary file beside `path`, mode 0600, synced; its name in `tmp`.
Status write_temporary(const std::string& path, const Secret& key, std::string& tmp) {
  tmp = path + ".new-XXXXXX";
  UniqueFd fd(::mkstemp(tmp.data()));
  if (!fd.valid()) return Status::from_errno("cannot create a file beside key file " + path);
  Status s = write_all_fd(fd.get(), to_text(key));
  if (s && ::fchmod(fd.get(), kFileMode) != 0) s = Status::from_errno("fchmod");
  if (s && ::fsync(fd.get()) != 0) s = Status::from_errno("fsync");
  if (!s) ::unlink(tmp.c_str());
  return s.context("writing key file " + path);
}

void sync_parent(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  UniqueFd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) ::fsync(fd.get());
}

Status refuse_existing(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0)
    return Status::invalid("key file " + path + " already exists: a cluster's key is never replaced here "
                           "(remove it yourself if you really mean to change the cluster's key)");
  return Status::ok();
}

// What makes `st` (the file at `path`) unfit to hold a key, or ok.
Status check_file(const std::string& path, const struct stat& st) {
  const std::string where = "key file " + path;
  if (!S_ISREG(st.st_mode)) return Status::invalid(where + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return Status::invalid(where + " is owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " +
                           std::to_string(::geteuid()) + "): chown it");
  if (st.st_mode & kOthersBits)
    return Status::invalid(where + " has mode " + octal(st.st_mode) +
                           ": group or others may use it, so the key may be known; make a new key, "
                           "or if you are sure it was not read, chmod 600 " + path);
  const auto size = static_cast<size_t>(st.st_size);
  if (size != kKeyHexChars && size != kKeyHexChars + 1)
    return Status::invalid(where + " has " + std::to_string(size) + " bytes; a key file has " +
                           std::to_string(kKeyHexChars + 1) + " (64 hex digits and a newline)");
  return Status::ok();
}

}  // namespace

Status write_key(const std::string& path, const Secret& key) {
  MINIHV_TRY(refuse_existing(path));
  MINIHV_TRY(make_parent_dirs(path));
  std::string tmp;
  MINIHV_TRY(write_temporary(path, key, tmp));
  // link() never replaces: if another process made `path` since the check above, this fails.
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err == EEXIST) return refuse_existing(path);
  if (rc != 0) return Status::from_errno("cannot create key file " + path, err);
  sync_parent(path);
  return Status::ok();
}

Result<Secret> write_new_key(const std::string& path) {
  MINIHV_TRY(refuse_existing(path));  // before drawing a key for nothing
  auto key = random_secret();
  if (!key) return key.status();
  MINIHV_TRY(write_key(path, *key));
  return key;
}

Result<Secret> read_key(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return Status::invalid_from_errno("cannot open key file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno("key file " + path);
  MINIHV_TRY(check_file(path, st));
  std::string text(kKeyHexChars + 2, '\0');
  ssize_t n;
  do n = ::read(fd.get(), text.data(), text.size());
  while (n < 0 && errno == EINTR);
  if (n < 0) return Status::from_errno("reading key file " + path);
  text.resize(static_cast<size_t>(n));
  auto key = parse_text(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!key) return key.status().context("key file " + path);
  return key;
}

}  // namespace minihv::keys
