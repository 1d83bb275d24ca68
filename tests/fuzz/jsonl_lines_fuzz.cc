// libFuzzer target for what a JSON-lines peer sends (common/jsonl.h: a VM's control socket, a node's
// port): any bytes are split into lines no longer than the cap, none holding a '\n', a line over the
// cap is refused, and every line parses to JSON or is discarded; never a crash or growth past the cap.
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/jsonl.h"
#include "common/net.h"

using namespace minihv;

namespace {
constexpr size_t kMaxInput = 64 * 1024;  // fits a Unix socket's buffer: written whole before reading
constexpr size_t kCap = 512;             // small, so the fuzzer reaches the cap
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  UniqueFd reader_end(sv[0]), writer_end(sv[1]);
  if (!net::send_all(writer_end.get(), std::string_view(reinterpret_cast<const char*>(data), size))) std::abort();
  writer_end.reset();
  jsonl::LineReader reader(kCap);
  size_t consumed = 0;
  for (std::string line;;) {
    const auto got = reader.next(reader_end.get(), line, std::chrono::milliseconds(1000));
    if (got == jsonl::LineReader::Got::kTooLong) return 0;  // the server answers with an error and hangs up
    if (got != jsonl::LineReader::Got::kLine) break;
    if (line.size() > kCap || line.find('\n') != std::string::npos) std::abort();
    consumed += line.size() + 1;
    (void)jsonl::Json::parse(line, nullptr, /*allow_exceptions=*/false);
  }
  if (reader.rest().size() > kCap || consumed + reader.rest().size() != size) std::abort();
  return 0;
}
