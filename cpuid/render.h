// cpuid/render.h — profiles and models as text: the `cpuid -r`-style table (which
// import_dump() reads back), feature lists, and docs/cpu-models.md.
#pragma once

#include <string>
#include <vector>

#include "cpuid/profile.h"

namespace minihv::cpuid {

// One line per entry: "0x00000001 0x00: eax=0x000306c3 ebx=0x00000800 ecx=... edx=...".
std::string render_table(const Profile& p);
// "vendor GenuineIntel family 6 model 60 stepping 3, 46 physical address bits"
std::string render_summary(const Profile& p);
// Names wrapped at `width` columns, each line starting with `indent`.
std::string wrap_names(const std::vector<std::string>& names, const std::string& indent, size_t width = 100);
// Features on in `host` that `table` hides.
std::vector<std::string> hidden_features(const Profile& host, const Profile& table);
// docs/cpu-models.md: every model's features per vendor, and the feature table.
std::string models_markdown();

}  // namespace minihv::cpuid
