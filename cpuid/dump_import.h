// cpuid/dump_import.h — a Profile from a published raw CPUID dump (text), for test data and
// `minihv cpuid import`.
//
// Understands three common formats, first logical CPU only:
//   AIDA64 / InstLatx64:   CPUID 0000000D: 000002FF-00000A80-00000A88-00000000 [SL 01]
//   libcpuid test files:   basic_cpuid[1]=000306c3 03100800 7fdafbbf bfebfbff  (and ext_cpuid,
//                          intel_fn4, intel_fn11)
//   cpuid(1) `cpuid -r`:   0x00000001 0x00: eax=0x000306c3 ebx=0x03100800 ecx=... edx=...
// Leaves above the maximum basic/extended leaf are dropped (dumpers print garbage there).
#pragma once

#include <string>

#include "common/status.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

Result<Profile> import_dump(const std::string& text, const std::string& origin);
Result<Profile> import_dump_file(const std::string& path);

}  // namespace minihv::cpuid
