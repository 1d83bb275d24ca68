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

// Sends 1 MiB PAGES frames on stream 0 until sending fails (a peer that closed), at most 1000:
// the last status, an error unless the peer took a whole GiB.
template <class SessionT>
Status send_until_refused(SessionT& s) {
  Status sent;
  for (uint32_t i = 0; sent && i < 1000; ++i) {
    sent = s.send(kControlStream, tagged_pages_frame(i, 1 << 20));
    if (sent) sent = s.flush();
  }
  return sent;
}

// A channel key for the tests (TLS is the default); another `fill` is another key.
inline tls::Psk test_psk(uint8_t fill = 0x42) {
  std::array<uint8_t, keys::kKeyBytes> b;
  b.fill(fill);
  return tls::Psk{keys::Secret(b)};
}

}  // namespace minihv::migrate
