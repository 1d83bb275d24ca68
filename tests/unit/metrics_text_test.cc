// The Prometheus text exposition (common/metrics.h): escaping, number formats, histogram lines.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace minihv::metrics {
namespace {

TEST(MetricsText, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(escape_label_value("plain-vm_1"), "plain-vm_1");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escape_label_value("two\nlines"), "two\\nlines");
  EXPECT_EQ(escape_label_value("\\\"\n"), "\\\\\\\"\\n");
}

TEST(MetricsText, HelpEscapesBackslashAndNewlineButNotQuotes) {
  EXPECT_EQ(escape_help("a \"b\" c\\d\ne"), "a \"b\" c\\\\d\\ne");
}

TEST(MetricsText, Values) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(42), "42");
  EXPECT_EQ(format_value(-3), "-3");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(0.001), "0.001");
  EXPECT_EQ(format_value(0.0005), "0.0005");
  EXPECT_EQ(format_value(0.00001), "1e-05");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
}

TEST(MetricsText, CounterAndGaugeWithLabels) {
  Family vms{"minihv_vms", "VMs of this node by state", Type::kGauge,
             {{{{"state", "running"}}, 2}, {{{"state", "starting"}}, 0}}, {}};
  Family up{"minihv_vm_up", "1 when the VM runs", Type::kGauge, {{{{"vm", "we\"ird\\vm\n"}}, 1}}, {}};
  Family total{"minihv_failovers_total", "VMs restarted here", Type::kCounter, {{{}, 3}}, {}};
  EXPECT_EQ(render_exposition({vms, up, total}),
            "# HELP minihv_vms VMs of this node by state\n"
            "# TYPE minihv_vms gauge\n"
            "minihv_vms{state=\"running\"} 2\n"
            "minihv_vms{state=\"starting\"} 0\n"
            "# HELP minihv_vm_up 1 when the VM runs\n"
            "# TYPE minihv_vm_up gauge\n"
            "minihv_vm_up{vm=\"we\\\"ird\\\\vm\\n\"} 1\n"
            "# HELP minihv_failovers_total VMs restarted here\n"
            "# TYPE minihv_failovers_total counter\n"
            "minihv_failovers_total 3\n");
}

TEST(MetricsText, HistogramBucketsAreCumulativeUpToInf) {
  Histogram h({0.0078125, 0.1, 1});  // binary fractions: the sum is exact
  for (double v : {0.0078125, 0.0625, 0.5, 0.5, 7.0}) h.observe(v);  // a bound's own value is in its bucket
  Family f{"minihv_x_seconds", "x", Type::kHistogram, {}, {h.snapshot({{"lease", "node"}})}};
  EXPECT_EQ(render_exposition({f}),
            "# HELP minihv_x_seconds x\n"
            "# TYPE minihv_x_seconds histogram\n"
            "minihv_x_seconds_bucket{lease=\"node\",le=\"0.0078125\"} 1\n"
            "minihv_x_seconds_bucket{lease=\"node\",le=\"0.1\"} 2\n"
            "minihv_x_seconds_bucket{lease=\"node\",le=\"1\"} 4\n"
            "minihv_x_seconds_bucket{lease=\"node\",le=\"+Inf\"} 5\n"
            "minihv_x_seconds_sum{lease=\"node\"} 8.0703125\n"
            "minihv_x_seconds_count{lease=\"node\"} 5\n");
}

TEST(MetricsText, EmptyHistogramHasEveryBucketAtZero) {
  Histogram h({0.5});
  Family f{"minihv_y_seconds", "y", Type::kHistogram, {}, {h.snapshot()}};
  EXPECT_EQ(render_exposition({f}),
            "# HELP minihv_y_seconds y\n"
            "# TYPE minihv_y_seconds histogram\n"
            "minihv_y_seconds_bucket{le=\"0.5\"} 0\n"
            "minihv_y_seconds_bucket{le=\"+Inf\"} 0\n"
            "minihv_y_seconds_sum 0\n"
            "minihv_y_seconds_count 0\n");
}

}  // namespace
}  // namespace minihv::metrics
