#include "vmm/devices/net_spec.h"

#include <algorithm>
#include <string>

namespace minihv {

namespace {

constexpr const char* kForm = "tap=NAME[,mac=MAC][,bridge=NAME][,queues=N]";

Result<std::string> interface_name(const std::string& key, const std::string& value) {
  if (!valid_interface_name(value))
    return Status::invalid(key + "=" + value + ": not an interface name (1-15 characters, no '/', ':' or spaces)");
  return value;
}

Result<unsigned> queue_pairs(const std::string& value) {
  const bool digits = !value.empty() && value.size() <= 2 &&
                      std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  const unsigned n = digits ? static_cast<unsigned>(std::stoul(value)) : 0;
  if (n < 1 || n > NicSpec::kMaxQueuePairs)
    return Status::invalid("queues=" + value + ": want 1 to " + std::to_string(NicSpec::kMaxQueuePairs) +
                           " queue pairs");
  return n;
}

Status apply_option(NicSpec& spec, const std::string& key, const std::string& value) {
  if (key == "tap" || key == "bridge") {
    auto name = interface_name(key, value);
    if (!name) return name.status();
    (key == "tap" ? spec.tap : spec.bridge) = *name;
  } else if (key == "mac") {
    auto mac = parse_mac(value);
    if (!mac) return mac.status();
    spec.mac = *mac;
  } else if (key == "queues") {
    auto n = queue_pairs(value);
    if (!n) return n.status();
    spec.queues = *n;
  } else {
    return Status::invalid("unknown option '" + key + "' (known: tap, mac, bridge, queues)");
  }
  return Status::ok();
}

}  // namespace

Result<NicSpec> parse_nic_spec(const std::string& text) {
  NicSpec spec;
  for (size_t pos = 0; pos <= text.size();) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string part = text.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t eq = part.find('=');
    if (eq == std::string::npos || eq + 1 == part.size())
      return Status::invalid("'" + part + "': want KEY=VALUE (" + kForm + ")");
    MINIHV_TRY(apply_option(spec, part.substr(0, eq), part.substr(eq + 1)));
  }
  if (spec.tap.empty()) return Status::invalid("'" + text + "': tap=NAME is required");
  return spec;
}

}  // namespace minihv
