#include "cpuid/profile_json.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace minihv::cpuid {

namespace {

constexpr Reg kRegs[] = {Reg::kEax, Reg::kEbx, Reg::kEcx, Reg::kEdx};

Status bad(const std::string& origin, const std::string& where, const std::string& what) {
  return Status::invalid(origin + ": " + where + ": " + what);
}

Result<uint32_t> number(const nlohmann::json& v, const std::string& origin, const std::string& where) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= 0xffffffffull) return static_cast<uint32_t>(v.get<uint64_t>());
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    size_t used = 0;
    unsigned long long n = 0;
    try {
      n = std::stoull(s, &used, 0);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == s.size() && !s.empty() && n <= 0xffffffffull) return static_cast<uint32_t>(n);
  }
  return bad(origin, where, "expected a 32-bit number (e.g. \"0x1f\" or 31), got " + v.dump());
}

std::string line_col(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

}  // namespace

std::string hex32(uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

nlohmann::json to_json(const Profile& p, const std::string& source) {
  nlohmann::json leaves = nlohmann::json::array();
  for (const auto& [k, r] : p.leaves) {
    leaves.push_back({{"leaf", hex32(k.leaf)},
                      {"subleaf", hex32(k.subleaf)},
                      {"eax", hex32(r.eax)},
                      {"ebx", hex32(r.ebx)},
                      {"ecx", hex32(r.ecx)},
                      {"edx", hex32(r.edx)}});
  }
  nlohmann::json j{{"format", kProfileFormat}, {"vendor", p.vendor}};
  if (!source.empty()) j["source"] = source;
  j["leaves"] = std::move(leaves);
  return j;
}

Result<Profile> profile_from_json(const nlohmann::json& j, const std::string& origin) {
  // `cpuid show --json` and a VM's status carry the profile a guest can execute (what migration
  // compares) under "profile"; vm status --json under "cpu"."profile".
  if (j.is_object() && !j.contains("leaves")) {
    if (j.contains("profile") && j["profile"].is_object()) return profile_from_json(j["profile"], origin + " (profile)");
    if (j.contains("cpu") && j["cpu"].is_object() && j["cpu"].contains("profile"))
      return profile_from_json(j["cpu"]["profile"], origin + " (cpu.profile)");
  }
  if (!j.is_object()) return bad(origin, "top level", "expected an object with \"vendor\" and \"leaves\"");
  if (j.contains("format") && j["format"] != kProfileFormat)
    return bad(origin, "format", "unsupported " + j["format"].dump() + " (expected \"" + kProfileFormat + "\")");
  if (!j.contains("vendor") || !j["vendor"].is_string() || j["vendor"].get<std::string>().size() != 12)
    return bad(origin, "vendor", "expected the 12-character vendor string, e.g. \"GenuineIntel\"");
  if (!j.contains("leaves") || !j["leaves"].is_array()) return bad(origin, "leaves", "expected an array");
  Profile p;
  p.vendor = j["vendor"].get<std::string>();
  const auto& leaves = j["leaves"];
  for (size_t i = 0; i < leaves.size(); ++i) {
    const std::string at = "leaves[" + std::to_string(i) + "]";
    const auto& e = leaves[i];
    if (!e.is_object() || !e.contains("leaf")) return bad(origin, at, "expected an object with \"leaf\"");
    auto leaf = number(e["leaf"], origin, at + ".leaf");
    if (!leaf) return leaf.status();
    uint32_t sub = 0;
    if (e.contains("subleaf")) {
      auto s = number(e["subleaf"], origin, at + ".subleaf");
      if (!s) return s.status();
      sub = *s;
    }
    if (sub != 0 && !is_indexed(*leaf))
      return bad(origin, at + ".subleaf", "leaf " + hex32(*leaf) + " has no subleaves");
    if (p.find(*leaf, sub))
      return bad(origin, at, "duplicate leaf " + hex32(*leaf) + " subleaf " + std::to_string(sub));
    Regs r;
    for (Reg reg : kRegs) {
      const char* name = reg_name(reg);
      if (!e.contains(name)) continue;  // an absent register reads as 0
      auto v = number(e[name], origin, at + "." + name);
      if (!v) return v.status();
      r[reg] = *v;
    }
    p.leaves[LeafKey{*leaf, sub}] = r;
  }
  if (!p.find(kLeafVendor)) return bad(origin, "leaves", "leaf 0x0 is missing");
  if (vendor_from_regs(p.get(kLeafVendor)) != p.vendor)
    return bad(origin, "vendor", "\"" + p.vendor + "\" does not match leaf 0 (\"" +
                                     vendor_from_regs(p.get(kLeafVendor)) + "\")");
  return p;
}

Result<Profile> parse_profile(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    size_t byte = e.byte > 0 ? e.byte - 1 : 0;
    std::string msg = e.what();
    if (auto pos = msg.find("syntax error"); pos != std::string::npos) msg = msg.substr(pos);
    return Status::invalid(origin + ": byte " + std::to_string(byte) + " (" + line_col(text, byte) +
                           "): malformed JSON: " + msg);
  }
  return profile_from_json(j, origin);
}

Result<Profile> load_profile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::invalid(path + ": cannot open (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_profile(ss.str(), path);
}

}  // namespace minihv::cpuid
