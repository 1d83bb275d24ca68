// The validation report for people: aligned text for a terminal, one HTML page for a browser.
// Both read only the report JSON, so a report saved with --json renders the same later.
#include <time.h>

#include <algorithm>
#include <cstdio>

#include "cluster/validate_checks.h"
#include "common/json_text.h"
#include "common/units.h"

namespace minihv::cluster {

namespace {

using detail::field;
using detail::flag;
using detail::i64;
using detail::str;
using detail::u64;

const nlohmann::json& list(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  const auto& v = field(j, key);
  return v.is_array() ? v : kEmpty;
}

// A string as is; anything else as JSON.
std::string text(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : json_text(j); }

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

std::string names(const nlohmann::json& arr) {
  std::string s;
  for (const auto& n : arr) s += (s.empty() ? "" : ", ") + text(n);
  return s;
}

std::string utc(int64_t unix_ms) {
  if (unix_ms <= 0) return "unknown";
  const time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return b;
}

std::string baseline_line(const nlohmann::json& b) {
  if (!str(b, "error").empty()) return "no baseline: " + str(b, "error");
  std::string s = str(b, "vendor") + ", " + std::to_string(i64(b, "features")) + " features, " +
                  std::to_string(i64(b, "phys_bits")) + " physical address bits, common to " + names(list(b, "nodes"));
  if (!list(b, "weakest_lacks").empty())
    s += "; node " + str(b, "weakest_node") + " lacks " + std::to_string(list(b, "weakest_lacks").size()) +
         " features the others have: " + names(list(b, "weakest_lacks"));
  return s;
}

// "passed", "passed with 2 warnings", "FAILED: 1 check failed (volume)".
std::string verdict(const nlohmann::json& report) {
  std::vector<std::string> failed;
  size_t warnings = 0;
  for (const auto& c : list(report, "checks")) {
    if (str(c, "result") == "fail") failed.push_back(str(c, "id"));
    if (str(c, "result") == "warn") ++warnings;
  }
  const std::string cluster = "cluster " + str(report, "cluster");
  if (!failed.empty())
    return cluster + " FAILED validation: " + std::to_string(failed.size()) + " check" +
           (failed.size() == 1 ? "" : "s") + " failed (" + detail::join(failed) + ")";
  if (warnings)
    return cluster + " passed validation with " + std::to_string(warnings) + " warning" + (warnings == 1 ? "" : "s");
  return cluster + " passed validation";
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string cell(const std::string& text, const std::string& cls = "") {
  return (cls.empty() ? "<td>" : "<td class=\"" + cls + "\">") + escape(text) + "</td>";
}

constexpr char kStyle[] = R"(
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.result { font-weight: bold; text-align: center; width: 4em; }
tr.pass td.result, .verdict.pass { background: #d8f0d8; color: #1a6b1a; }
tr.warn td.result, .verdict.warn { background: #fbeec8; color: #7a5500; }
tr.fail td.result, .verdict.fail { background: #f7d4d4; color: #9b1c1c; }
.verdict { padding: .6em 1em; font-weight: bold; display: inline-block; }
ul { margin: .3em 0; padding-left: 1.4em; color: #555; }
code { font-size: .9em; }
td.fail { color: #9b1c1c; }
)";

std::string checks_table(const nlohmann::json& report) {
  std::string h = "<table class=\"checks\">\n<tr><th>Result</th><th>Check</th><th>Message</th></tr>\n";
  for (const auto& c : list(report, "checks")) {
    const std::string result = str(c, "result");
    h += "<tr class=\"" + escape(result) + "\">" + cell(upper(result), "result") + cell(str(c, "title")) + "<td>" +
         escape(str(c, "message"));
    if (!list(c, "details").empty()) {
      h += "<ul>";
      for (const auto& d : list(c, "details")) h += "<li>" + escape(text(d)) + "</li>";
      h += "</ul>";
    }
    h += "</td></tr>\n";
  }
  return h + "</table>\n";
}

std::string nodes_table(const nlohmann::json& report) {
  std::string h = "<table class=\"nodes\">\n<tr><th>Node</th><th>Address</th><th>Host id</th><th>Processor</th>"
                  "<th>KVM</th><th>Memory available</th><th>VMs</th><th>Lease read p99</th><th>Clock skew</th></tr>\n";
  for (const auto& n : list(report, "node_details")) {
    h += "<tr>" + cell(str(n, "name")) + cell(str(n, "address"));
    if (!flag(n, "answered")) {
      h += "<td colspan=\"7\" class=\"fail\">" + escape("did not answer: " + str(n, "error")) + "</td></tr>\n";
      continue;
    }
    const auto& skew = field(n, "clock_skew_ms");
    h += cell(std::to_string(i64(n, "host_id"))) + cell(str(n, "vendor") + " " + str(n, "model_name")) +
         cell(str(n, "kvm")) +
         cell(format_size(u64(n, "mem_available_bytes")) + " of " + format_size(u64(n, "mem_total_bytes"))) +
         cell(format_size(u64(n, "vms_mem_bytes"))) + cell(detail::fmt_us(i64(n, "lease_p99_us"))) +
         cell(skew.is_number() ? std::to_string(skew.get<int64_t>()) + " ms" : "not measured") + "</tr>\n";
  }
  return h + "</table>\n";
}

std::string baseline_section(const nlohmann::json& b) {
  std::string h = "<p>" + escape(baseline_line(b)) + "</p>\n";
  if (list(b, "per_node").empty()) return h;
  h += "<table class=\"baseline\">\n<tr><th>Node</th><th>Processor</th><th>Features</th><th>Above the baseline</th>"
       "<th>Physical address bits</th></tr>\n";
  for (const auto& n : list(b, "per_node"))
    h += "<tr>" + cell(str(n, "node")) + cell(str(n, "model_name")) + cell(std::to_string(i64(n, "features"))) +
         cell(std::to_string(i64(n, "above_baseline"))) + cell(std::to_string(i64(n, "phys_bits"))) + "</tr>\n";
  h += "</table>\n<details><summary>The baseline's " + std::to_string(i64(b, "features")) +
       " features</summary><p><code>" + escape(names(list(b, "feature_names"))) + "</code></p></details>\n";
  return h;
}

}  // namespace

std::string render_text(const nlohmann::json& report) {
  std::string out = "Cluster " + str(report, "cluster") + " on volume " + str(report, "volume_uuid") + ", " +
                    utc(i64(report, "generated_unix_ms")) + "\nNodes: " + names(list(report, "nodes")) + "\n\n";
  size_t width = 0;
  for (const auto& c : list(report, "checks")) width = std::max(width, str(c, "title").size());
  for (const auto& c : list(report, "checks")) {
    const std::string title = str(c, "title") + ":";
    out += upper(str(c, "result")) + "  " + title + std::string(width + 2 - title.size(), ' ') + str(c, "message");
    out += "\n";
    for (const auto& d : list(c, "details")) out += "        " + text(d) + "\n";
  }
  out += "\nBaseline: " + baseline_line(field(report, "baseline")) + "\n";
  return out + "\n" + verdict(report) + "\n";
}

std::string render_html(const nlohmann::json& report) {
  const bool ok = flag(report, "ok");
  bool warned = false;
  for (const auto& c : list(report, "checks")) warned = warned || str(c, "result") == "warn";
  const std::string cls = !ok ? "fail" : warned ? "warn" : "pass";
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
         escape("minihv cluster validation: " + str(report, "cluster")) + "</title>\n<style>" + kStyle +
         "</style>\n</head>\n<body>\n<h1>" + escape("Cluster validation report: " + str(report, "cluster")) +
         "</h1>\n<p>" + escape("Volume " + str(report, "volume_uuid") + ", generated " +
                               utc(i64(report, "generated_unix_ms")) + ", nodes: " + names(list(report, "nodes"))) +
         "</p>\n<p class=\"verdict " + cls + "\">" + escape(verdict(report)) + "</p>\n<h2>Checks</h2>\n" +
         checks_table(report) + "<h2>Nodes</h2>\n" + nodes_table(report) + "<h2>Processor baseline</h2>\n" +
         baseline_section(field(report, "baseline")) + "</body>\n</html>\n";
}

}  // namespace minihv::cluster
