// common/capped_file.h — an output file that never grows past a cap: a console or log that a guest
// (or a chatty VM) writes without end must not fill the host's disk or tmpfs.
//
// Owns: the file, the bytes written to it, and its rotation: when a write would take PATH past the
// cap, PATH's content becomes PATH.1's (replacing the one before) and PATH starts empty, so at most
// twice the cap is on disk and the newest output is always in PATH. Both files are opened at
// open(): rotating copies and truncates, so it needs no open or rename (the VMM's sandbox).
// Not thread-safe: one writer, or the caller's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

// Where the cap is not given: a console or log of this size holds hours of a busy guest's output.
inline constexpr uint64_t kDefaultOutputCap = 16ull << 20;

class CappedFile {
public:
  enum class Start { kTruncate, kAppend };
  // `cap` 0: no cap (the file grows as the caller writes).
  static Result<CappedFile> open(const std::string& path, uint64_t cap, Start start, unsigned mode = 0600);

  // Writes all of `n` bytes, rotating where they reach the cap (a write may end in PATH.1 and go on
  // in PATH). Best effort: a file that cannot be written drops output and never fails the writer
  // (a guest must not stall on it).
  void write(const char* data, size_t n);
  const std::string& path() const { return path_; }

private:
  CappedFile(std::string path, uint64_t cap, UniqueFd fd, UniqueFd older, uint64_t size)
      : path_(std::move(path)), cap_(cap), fd_(std::move(fd)), older_(std::move(older)), size_(size) {}
  void rotate();
  bool write_all(const char* data, size_t n);

  std::string path_;
  uint64_t cap_;
  UniqueFd fd_;
  UniqueFd older_;  // PATH.1 (none without a cap)
  uint64_t size_;  // bytes in PATH now
  bool warned_ = false;
};

}  // namespace minihv
