// libFuzzer target for the cluster configuration as read from a shared volume (any bytes another
// node, another version, or damage may have left there): config_from_json must refuse or accept,
// never crash, and what it accepts must survive a round trip unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/config.h"

using namespace minihv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto c = cluster::config_from_json(j);
  if (!c) return 0;
  const nlohmann::json again = cluster::to_json(*c);
  auto c2 = cluster::config_from_json(again);
  if (!c2 || cluster::to_json(*c2) != again) std::abort();  // what we accept, we write back the same
  return 0;
}
