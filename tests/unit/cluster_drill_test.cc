// cluster/drill: a failover drill's plan and verdict, driven by made-up cluster status replies.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cluster/drill.h"

namespace minihv::cluster {
namespace {

using Json = nlohmann::json;

constexpr int64_t kKilled = 1'000'000;

Json node(const std::string& name, const std::string& state, const std::string& listen) {
  return {{"name", name}, {"state", state}, {"listen", listen}};
}

// Before the kill: n1 (the victim) runs a (idle) and b (disk, last record 41); n2 and n3 are up.
Json before() {
  return {{"nodes", {node("n1", "up", "10.0.0.1:7700"), node("n2", "up", "10.0.0.2:7700"), node("n3", "up", "10.0.0.3:7700")}},
          {"vms", {{{"name", "a"}, {"node", "n1"}}, {{"name", "b"}, {"node", "n1"}, {"disk", "d0"}}, {{"name", "c"}, {"node", "n3"}}}},
          {"node_status", {{"n1", {{"local", {{{"name", "a"}}, {{"name", "b"}, {"last_rec", 41}}}}}}}}};
}

// After the kill: n1 dead, a and b on n2 with the given process entries.
Json after(const Json& a_local, const Json& b_local) {
  Json nodes = {node("n1", "dead", "10.0.0.1:7700"), node("n2", "up", "10.0.0.2:7700")};
  nodes[0]["dead_since_unix_ms"] = kKilled + 1500;
  return {{"nodes", nodes},
          {"vms", {{{"name", "a"}, {"node", "n2"}}, {{"name", "b"}, {"node", "n2"}, {"disk", "d0"}}}},
          {"node_status", {{"n2", {{"local", {a_local, b_local}}}}}}};
}

Json local(const std::string& vm, long errs, long corrupt, long disk_resume) {
  Json l = {{"name", vm}, {"leased_unix_ms", kKilled + 1600}, {"started_unix_ms", kKilled + 1700},
            {"first_hb_unix_ms", kKilled + 1900}, {"errs", errs}, {"corrupt", corrupt}};
  if (disk_resume >= 0) l["disk_resume"] = disk_resume;
  return l;
}

TEST(DrillPlan, TheVictimsVmsAndAnotherUpNodeToWatch) {
  auto plan = plan_drill(before(), "n1");
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->victim_address, "10.0.0.1:7700");
  EXPECT_EQ(plan->observer_address, "10.0.0.2:7700");
  ASSERT_EQ(plan->vms.size(), 2u);
  EXPECT_EQ(plan->vms[0].name, "a");
  EXPECT_EQ(plan->vms[0].last_rec, -1);
  EXPECT_EQ(plan->vms[1].disk, "d0");
  EXPECT_EQ(plan->vms[1].last_rec, 41);
}

TEST(DrillPlan, RefusedWithoutAVictimOrASurvivor) {
  struct Case {
    Json status;
    std::string victim, error;
  };
  Json down = before();
  down["nodes"][0]["state"] = "dead";
  const Json alone = {{"nodes", {node("n1", "up", "10.0.0.1:7700"), node("n2", "dead", "10.0.0.2:7700")}}};
  for (const auto& c : std::vector<Case>{{before(), "n9", "no node named 'n9'"},
                                         {down, "n1", "node n1 is not up"},
                                         {alone, "n1", "no other node is up to take over"}}) {
    auto plan = plan_drill(c.status, c.victim);
    ASSERT_FALSE(plan) << c.error;
    EXPECT_TRUE(plan.status().is_invalid_input());
    EXPECT_EQ(plan.message(), c.error);
  }
}

TEST(DrillSettled, EveryVmHasBeatenElsewhereAndEveryDiskResumed) {
  const DrillPlan plan = *plan_drill(before(), "n1");
  EXPECT_FALSE(drill_settled(before(), plan, kKilled));  // still on the victim
  EXPECT_TRUE(drill_settled(after(local("a", 0, 0, -1), local("b", 0, 0, 41)), plan, kKilled));
  EXPECT_FALSE(drill_settled(after(local("a", 0, 0, -1), local("b", 0, 0, -1)), plan, kKilled));  // no disk resume yet
  Json old_beat = local("a", 0, 0, -1);
  old_beat["first_hb_unix_ms"] = kKilled - 1;  // a heartbeat from before the kill does not count
  EXPECT_FALSE(drill_settled(after(old_beat, local("b", 0, 0, 41)), plan, kKilled));
}

TEST(DrillVerdict, Table) {
  const DrillPlan plan = *plan_drill(before(), "n1");
  struct Case {
    const char* what;
    Json after;
    Status wait;
    bool a_ok, b_ok, ok;
  };
  const std::vector<Case> cases = {
      {"both back, clean", after(local("a", 0, 0, -1), local("b", 0, 0, 41)), Status::ok(), true, true, true},
      {"disk resumed past the last ack", after(local("a", 0, 0, -1), local("b", 0, 0, 45)), Status::ok(), true, true, true},
      {"disk resumed before the last ack", after(local("a", 0, 0, -1), local("b", 0, 0, 40)), Status::ok(), true, false, false},
      {"an err", after(local("a", 1, 0, -1), local("b", 0, 0, 41)), Status::ok(), false, true, false},
      {"a corrupt page", after(local("a", 0, 2, -1), local("b", 0, 0, 41)), Status::ok(), false, true, false},
      {"the wait timed out", after(local("a", 0, 0, -1), local("b", 0, 0, 41)), Status::error("timed out after 60 s"), true, true, false},
      {"no status at all", Json::object(), Status::error("connection refused"), false, false, false},
  };
  for (const auto& c : cases) {
    const Json r = drill_verdict(c.after, plan, kKilled, c.wait);
    SCOPED_TRACE(c.what);
    EXPECT_EQ(r.value("ok", true), c.ok);
    ASSERT_EQ(r["vms"].size(), 2u);
    EXPECT_EQ(r["vms"][0].value("ok", !c.a_ok), c.a_ok);
    EXPECT_EQ(r["vms"][1].value("ok", !c.b_ok), c.b_ok);
    EXPECT_EQ(r.contains("error"), !c.wait);
    EXPECT_EQ(r.value("node", ""), "n1");
    EXPECT_EQ(r.value("killed_unix_ms", int64_t{0}), kKilled);
  }
}

TEST(DrillVerdict, TimesAreFromTheKill) {
  const DrillPlan plan = *plan_drill(before(), "n1");
  const Json r = drill_verdict(after(local("a", 0, 0, -1), local("b", 0, 0, 41)), plan, kKilled, Status::ok());
  EXPECT_EQ(r.value("detected_ms", int64_t{0}), 1500);
  EXPECT_EQ(r["vms"][0].dump(),
            R"({"corrupt":0,"disk_resume":-1,"errs":0,"first_heartbeat_ms":1900,"last_acknowledged":-1,"leased_ms":1600,)"
            R"("node":"n2","ok":true,"started_ms":1700,"vm":"a"})");
  EXPECT_EQ(r["vms"][1].value("last_acknowledged", 0L), 41);
  const Json none = drill_verdict(Json::object(), plan, kKilled, Status::error("x"));
  EXPECT_EQ(none.value("detected_ms", int64_t{0}), -1);
  EXPECT_EQ(none["vms"][0].value("node", "?"), "");
  EXPECT_EQ(none["vms"][0].value("first_heartbeat_ms", int64_t{0}), -1);
}

}  // namespace
}  // namespace minihv::cluster
