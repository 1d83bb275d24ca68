#include "cpuid/suggest.h"

#include <algorithm>
#include <numeric>

namespace minihv::cpuid {

namespace {
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}
}  // namespace

std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       size_t max) {
  std::vector<std::pair<size_t, size_t>> scored;  // (distance, index)
  for (size_t i = 0; i < candidates.size(); ++i) {
    size_t d = edit_distance(name, candidates[i]);
    // A prefix or substring match is as good as one edit: "sse4" → sse4_1, sse4_2, sse4a.
    if (!name.empty() && candidates[i].find(name) != std::string::npos) d = std::min<size_t>(d, 1);
    scored.emplace_back(d, i);
  }
  std::stable_sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  size_t limit = std::max<size_t>(3, name.size() / 2);  // beyond this it is a guess, not a typo
  for (const auto& [d, i] : scored) {
    if (out.size() == max || d > limit) break;
    out.push_back(candidates[i]);
  }
  return out;
}

std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates) {
  auto near = closest_names(name, candidates);
  if (near.empty()) return "";
  std::string s = "did you mean: ";
  for (size_t i = 0; i < near.size(); ++i) s += (i ? ", " : "") + near[i];
  return s + "?";
}

}  // namespace minihv::cpuid
