// common/json_text.h — JSON to text, for every line, file and record a process writes.
//
// Strings that reach JSON here may come from a guest (its console's heartbeat line, an error it
// printed) and need not be UTF-8. nlohmann's default dump throws type_error 316 on invalid UTF-8,
// which would end whichever thread writes (a node's status reply, its configuration write); these
// write U+FFFD for every invalid byte instead.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace minihv {

// `j` as text (indent -1: one line), never throwing on invalid UTF-8.
inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace minihv
