// cluster/validate_checks.h — the parts validate.cc and validate_cpu.cc share: one check being
// built, and safe reads of a probe (a probe comes from another process: a missing or mistyped
// field reads as empty, never throws).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/validate.h"

namespace minihv::cluster::detail {

enum class Level { kPass, kWarn, kFail };

class Check {
public:
  Check(std::string id, std::string title) : id_(std::move(id)), title_(std::move(title)) {}
  void warn(std::string what) { issues_.emplace_back(Level::kWarn, std::move(what)); }
  void fail(std::string what) { issues_.emplace_back(Level::kFail, std::move(what)); }
  void detail(std::string line) { details_.push_back(std::move(line)); }
  // The message when nothing is wrong.
  void on_pass(std::string message) { pass_ = std::move(message); }
  // Added to the message whenever the check does not pass (and to the details always).
  void note(std::string n) { note_ = std::move(n); }
  // The message holds every issue of the worst level; lesser issues go to the details.
  nlohmann::json to_json() const;

private:
  std::string id_, title_, pass_, note_;
  std::vector<std::pair<Level, std::string>> issues_;
  std::vector<std::string> details_;
};

const nlohmann::json& field(const nlohmann::json& j, const char* key);
std::string str(const nlohmann::json& j, const char* key);
int64_t i64(const nlohmann::json& j, const char* key);
uint64_t u64(const nlohmann::json& j, const char* key);
bool flag(const nlohmann::json& j, const char* key);

// "node c (10.0.0.3:7000)"
std::string label(const NodeResult& n);
// "on the one node", "on all 3 nodes"
std::string on_all(size_t nodes);
// "450 us", "4.5 ms"
std::string fmt_us(int64_t us);
std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

// One validation run: the input, the nodes that answered, and what the cpu check learnt.
struct Run {
  const ValidateInput& in;
  std::vector<const NodeResult*> up;  // nodes with a probe, in input order
  nlohmann::json baseline;            // the report's "baseline" (set by check_cpu)
};

// The cpu check (validate_cpu.cc): vendors, the baseline profile, and every VM's CPU model.
void check_cpu(Run& r, Check& c);

}  // namespace minihv::cluster::detail
