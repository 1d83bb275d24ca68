// cpuid/profile_json.h — a Profile as JSON, and back.
//
// {"format": "minihv-cpuid-profile/1", "vendor": "GenuineIntel", "source": "...",
//  "leaves": [{"leaf": "0x00000001", "subleaf": "0x0", "eax": "0x000306c3", ...}, ...]}
// Numbers may be hex strings or JSON integers. Errors name the file and the position: the byte,
// line and column for malformed JSON, the path (leaves[3].eax) for a wrong value.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "common/status.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

constexpr char kProfileFormat[] = "minihv-cpuid-profile/1";

nlohmann::json to_json(const Profile& p, const std::string& source = "");
// `origin` names the input in error messages (a file name, "status reply", ...). Also takes the
// output of `cpuid show --json` (its "profile") and of `vm status --json` (its "cpu"."profile").
Result<Profile> profile_from_json(const nlohmann::json& j, const std::string& origin);
Result<Profile> parse_profile(const std::string& text, const std::string& origin);
Result<Profile> load_profile(const std::string& path);
std::string hex32(uint32_t v);

}  // namespace minihv::cpuid
