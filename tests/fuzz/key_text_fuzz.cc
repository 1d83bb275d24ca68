// libFuzzer target for a key file's content (keys::parse_text: whatever a user, an editor or a
// damaged disk left in the file): refuse or accept, never crash; what it accepts is 64 hex digits
// and at most a newline, and writes back to the same key.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/keys.h"

using namespace minihv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto key = keys::parse_text(text);
  if (!key) {
    if (key.message().empty()) std::abort();  // a refusal always says why
    return 0;
  }
  if (size != keys::kKeyHexChars && size != keys::kKeyHexChars + 1) std::abort();
  auto again = keys::parse_text(keys::to_text(*key));
  if (!again || !(*again == *key)) std::abort();
  return 0;
}
