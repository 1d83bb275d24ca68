// Helpers shared by the migration transport tests.
#pragma once

#include <array>
#include <cstring>
#include <optional>

#include "common/tls.h"
#include "migrate/frames.h"

namespace minihv::migrate {

// A PAGES frame of `bytes` payload bytes whose first u32 is `tag_value` (the receiver reads it back
// to check order), counted as one page.
inline Frame tagged_pages_frame(uint32_t tag_value, size_t bytes) {
  FrameBuilder b;
  b.begin(FrameType::kPages, 0, bytes);
  b.put_u32(tag_value);
  std::memset(b.extend(bytes - 4), static_cast<int>(tag_value & 0xFF), bytes - 4);
  Frame f = b.finish();
  f.pages = 1;
  return f;
}

// A channel key for the tests (TLS is the default); another `fill` is another key.
inline tls::Psk test_psk(uint8_t fill = 0x42) {
  std::array<uint8_t, keys::kKeyBytes> b;
  b.fill(fill);
  return tls::Psk{keys::Secret(b)};
}

}  // namespace minihv::migrate
