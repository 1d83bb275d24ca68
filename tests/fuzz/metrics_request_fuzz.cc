// libFuzzer target for what a metrics client sends a node (`node --metrics`): any request head up to
// the server's limit gets 200 (only `GET /metrics`) or 404, and a reply that serializes; never a crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cluster/metrics_server.h"

using namespace minihv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > cluster::kMaxRequestBytes) return 0;  // the server closes such a request unanswered
  const std::string_view head(reinterpret_cast<const char*>(data), size);
  const cluster::HttpReply r = cluster::answer_http(head, [] { return std::string("minihv_up 1\n"); });
  if (r.status != 200 && r.status != 404) std::abort();
  if (r.status == 200 && head.substr(0, 4) != "GET ") std::abort();  // only GET is answered
  if (cluster::serialize(r).find("\r\n\r\n") == std::string::npos) std::abort();
  return 0;
}
