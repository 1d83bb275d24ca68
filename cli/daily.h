// cli/daily.h — notices worth saying once a day, not on every command (the PVM advisory warning).
//
// Owns: the stamp files that remember when a notice was last said on this host, for this user:
// $XDG_RUNTIME_DIR/minihv, else /run/minihv when writable (root), else /tmp/minihv-UID.
// Must not know: what the notices say.
#pragma once

#include <string>

namespace minihv::cli {

// True when the notice `name` was not said in the last day here (and records that it is said
// now); also true when no stamp can be written (better said twice than never).
bool due_today(const std::string& name);

}  // namespace minihv::cli
