// Helpers shared by the migration transport tests.
#pragma once

#include <cstring>

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

}  // namespace minihv::migrate
