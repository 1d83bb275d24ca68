// A node's metrics: what a scrape's request gets (cluster/metrics_server.h, without sockets), the
// families a node exports (cluster/node_metrics.h), and docs/metrics.md naming every one of them.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "cluster/metrics_server.h"
#include "cluster/node_metrics.h"

namespace minihv::cluster {
namespace {

const auto kText = [] { return std::string("minihv_x 1\n"); };

TEST(NodeMetricsHttp, GetMetricsIsServed) {
  for (const char* head : {"GET /metrics HTTP/1.1\r\nHost: n0\r\nAccept: */*\r\n\r\n", "GET /metrics?x=1 HTTP/1.0\r\n\r\n",
                           "GET /metrics HTTP/1.1\n\n"}) {
    const HttpReply r = answer_http(head, kText);
    EXPECT_EQ(r.status, 200) << head;
    EXPECT_EQ(r.content_type, "text/plain; version=0.0.4");
    EXPECT_EQ(r.body, "minihv_x 1\n");
  }
}

TEST(NodeMetricsHttp, AnythingElseIs404) {
  for (const char* head : {"GET / HTTP/1.1\r\n\r\n", "GET /metricsx HTTP/1.1\r\n\r\n", "POST /metrics HTTP/1.1\r\n\r\n",
                           "HEAD /metrics HTTP/1.1\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n", "",
                           "garbage"}) {
    EXPECT_EQ(answer_http(head, kText).status, 404) << head;
  }
}

TEST(NodeMetricsHttp, ReplyIsOneCompleteResponse) {
  EXPECT_EQ(serialize({200, "OK", "text/plain; version=0.0.4", "a 1\n"}),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 4\r\n"
            "Connection: close\r\n\r\na 1\n");
}

TEST(NodeMetrics, FamiliesOfANode) {
  NodeCounters c;
  c.lease_renewal.observe(0.0007);
  c.migrations_started += 2;
  c.migrations_succeeded += 1;
  c.migrations_failed += 1;
  c.migration_downtime.observe(0.04);
  c.failovers += 3;
  const NodeView v{"n0", "0.1", {{"web", "running", true}, {"db", "starting", false}}};
  const std::string text = metrics::render_exposition(node_families(c, v));
  for (const char* line : {"minihv_node_info{node=\"n0\",version=\"0.1\"} 1\n", "minihv_vms{state=\"running\"} 1\n",
                           "minihv_vms{state=\"starting\"} 1\n", "minihv_vms{state=\"migrating\"} 0\n",
                           "minihv_vm_up{vm=\"web\"} 1\n", "minihv_vm_up{vm=\"db\"} 0\n",
                           "minihv_node_lease_renewal_seconds_bucket{le=\"0.001\"} 1\n",
                           "minihv_node_lease_renewal_seconds_bucket{le=\"0.0005\"} 0\n",
                           "minihv_node_lease_renewal_seconds_count 1\n", "minihv_migrations_started_total 2\n",
                           "minihv_migrations_succeeded_total 1\n", "minihv_migrations_failed_total 1\n",
                           "minihv_migration_downtime_seconds_bucket{le=\"0.05\"} 1\n",
                           "minihv_migration_downtime_seconds_count 1\n", "minihv_failovers_total 3\n",
                           "# TYPE minihv_failovers_total counter\n",
                           "# TYPE minihv_migration_downtime_seconds histogram\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}

TEST(NodeMetrics, DocsListEveryMetric) {
  std::ifstream in(std::string(MINIHV_SOURCE_DIR) + "/docs/metrics.md");
  std::stringstream doc;
  doc << in.rdbuf();
  ASSERT_FALSE(doc.str().empty()) << "docs/metrics.md is missing";
  for (const auto& f : node_families(NodeCounters{}, NodeView{}))
    EXPECT_NE(doc.str().find("`" + f.name + "`"), std::string::npos) << "docs/metrics.md does not list " << f.name;
}

}  // namespace
}  // namespace minihv::cluster
