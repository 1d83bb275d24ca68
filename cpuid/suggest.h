// cpuid/suggest.h — "did you mean": the closest valid names to a misspelt one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace minihv::cpuid {

// Up to `max` candidates nearest to `name` by edit distance (ties in candidate order), closest first.
std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       size_t max = 3);
// "did you mean: a, b, c?" or "" when there is nothing to suggest.
std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace minihv::cpuid
