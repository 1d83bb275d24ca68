#include "cpuid/dump_import.h"

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

namespace minihv::cpuid {

namespace {

constexpr uint32_t kLongModeBit = 1u << 29, kSyscallBit = 1u << 11;

uint32_t hex(const std::string& s) { return static_cast<uint32_t>(std::stoul(s, nullptr, 16)); }

// Drops what lies beyond the advertised maximum leaves, and the hypervisor range (a dump of a
// virtual machine says nothing about the processor there).
void trim(Profile& p) {
  const uint32_t max_basic = p.max_basic(), max_ext = p.max_extended();
  for (auto it = p.leaves.begin(); it != p.leaves.end();) {
    uint32_t l = it->first.leaf;
    bool keep = l < kLeafHvBase ? l <= max_basic : (l >= kLeafExtBase && l <= max_ext && l < 0x8fffffff);
    it = keep ? std::next(it) : p.leaves.erase(it);
  }
}

struct Line {
  uint32_t leaf, subleaf;
  Regs r;
};

}  // namespace

Result<Profile> import_dump(const std::string& text, const std::string& origin) {
  static const std::regex aida(R"(^\s*CPUID ([0-9A-Fa-f]{8}): ([0-9A-Fa-f]{8})-([0-9A-Fa-f]{8})-([0-9A-Fa-f]{8})-([0-9A-Fa-f]{8})(?:\s*\[SL ([0-9A-Fa-f]+)\])?)");
  static const std::regex libcpuid(R"(^(basic_cpuid|ext_cpuid|intel_fn4|intel_fn11)\[(\d+)\]=([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}))");
  static const std::regex cpuid_r(R"(^\s*0x([0-9a-fA-F]{8}) 0x([0-9a-fA-F]{2}): eax=0x([0-9a-fA-F]{8}) ebx=0x([0-9a-fA-F]{8}) ecx=0x([0-9a-fA-F]{8}) edx=0x([0-9a-fA-F]{8}))");
  Profile p;
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0, used = 0;
  bool seen_leaf0 = false;
  while (std::getline(in, line)) {
    ++lineno;
    std::smatch m;
    Line l{};
    if (std::regex_search(line, m, aida)) {
      l = {hex(m[1]), m[6].matched ? hex(m[6]) : 0u, {hex(m[2]), hex(m[3]), hex(m[4]), hex(m[5])}};
    } else if (std::regex_search(line, m, cpuid_r)) {
      l = {hex(m[1]), hex(m[2]), {hex(m[3]), hex(m[4]), hex(m[5]), hex(m[6])}};
    } else if (std::regex_search(line, m, libcpuid)) {
      const std::string kind = m[1];
      uint32_t i = static_cast<uint32_t>(std::stoul(m[2]));
      Regs r{hex(m[3]), hex(m[4]), hex(m[5]), hex(m[6])};
      if (kind == "basic_cpuid") l = {i, 0, r};
      else if (kind == "ext_cpuid") l = {kLeafExtBase + i, 0, r};
      else if (kind == "intel_fn4") l = {kLeafCacheParams, i, r};
      else l = {kLeafTopology, i, r};
    } else {
      continue;
    }
    if (l.leaf == kLeafVendor && l.subleaf == 0) {
      if (seen_leaf0) break;  // the next logical CPU begins
      seen_leaf0 = true;
    }
    if (!is_indexed(l.leaf) && l.subleaf != 0) {
      return Status::invalid(origin + ": line " + std::to_string(lineno) + ": leaf " + std::to_string(l.leaf) +
                             " has no subleaves");
    }
    p.leaves[LeafKey{l.leaf, l.subleaf}] = l.r;
    ++used;
  }
  if (!used || !seen_leaf0)
    return Status::invalid(origin + ": no CPUID dump lines found (AIDA64 'CPUID 00000000: ...', libcpuid "
                                    "'basic_cpuid[0]=...' or `cpuid -r` '0x00000000 0x00: eax=...')");
  p.vendor = vendor_from_regs(p.get(kLeafVendor));
  trim(p);
  // Intel sets SYSCALL (0x80000001 EDX bit 11) only for CPUID executed in 64-bit mode; dumps taken
  // by 32-bit tools lack it although every Intel 64 processor has it.
  if (p.is_intel() && (p.get(kLeafExtFeatures1).edx & kLongModeBit)) p.at(kLeafExtFeatures1).edx |= kSyscallBit;
  return p;
}

Result<Profile> import_dump_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::invalid(path + ": cannot open (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return import_dump(ss.str(), path);
}

}  // namespace minihv::cpuid
