// cluster/validate: every check on a good three-node cluster, and the precise message of each
// failure; the renderers; and probe_local on a real volume file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "blockdev/record.h"
#include "cluster/probe.h"
#include "cluster/validate.h"
#include "cpuid_test_data.h"

namespace minihv::cluster {
namespace {

constexpr char kUuid[] = "9b1c0d2e-1111-4222-8333-444455556666";
constexpr int64_t kAsked = 1'700'000'000'000;

const nlohmann::json& check(const nlohmann::json& report, const std::string& id) {
  for (const auto& c : report["checks"])
    if (c["id"] == id) return c;
  static const nlohmann::json kMissing = {{"result", "missing"}, {"message", ""}};
  return kMissing;
}

std::string addr(char n) { return std::string("10.0.0.") + static_cast<char>('1' + (n - 'a')) + ":7000"; }
std::string mig(char n) { return std::string("10.0.2.") + static_cast<char>('1' + (n - 'a')) + ":7000"; }

nlohmann::json probe_of(char n, const cpuid::Profile& p, const std::string& model_name) {
  nlohmann::json caps = nlohmann::json::object();
  for (const KvmCap& c : kvm_caps()) caps[std::string(c.key)] = true;
  return {{"node", std::string(1, n)},
          {"host_id", n - 'a' + 1},
          {"pid", 4242},
          {"listen", addr(n)},
          {"migration_networks", {mig(n)}},
          {"volume", {{"path", "/vol/lab.img"}, {"uuid", kUuid}, {"cluster", "lab"}, {"disks", {"web-root"}}}},
          {"kvm", {{"ok", true}, {"error", ""}, {"api_version", 12}, {"caps", caps}, {"software_kvm_pvm", false},
                   {"advisory", false}, {"advisory_reason", ""}}},
          {"cpu", {{"vendor", p.vendor}, {"model_name", model_name}, {"profile", cpuid::to_json(p)}, {"error", ""}}},
          {"lease_io", {{"reads", 20}, {"p50_us", 150}, {"p99_us", 400}, {"max_us", 450}, {"error", ""}}},
          {"fencing", {{"loop_devices", true}, {"loop_error", ""}, {"watchdog", "/dev/watchdog"}, {"watchdog_timeout_s", 1}}},
          {"clock_unix_ms", kAsked + 5},
          {"mem_available_bytes", 8ull << 30},
          {"mem_total_bytes", 16ull << 30},
          {"vms_mem_bytes", 1ull << 30},
          {"bridges", {"br-lab", "docker0"}}};
}

// Nodes a and b are Skylake-SP Xeons, c a Haswell; everything else is in order.
class ClusterValidate : public ::testing::Test {
protected:
  ClusterValidate() {
    in.cluster = "lab";
    in.volume_uuid = kUuid;
    in.generated_unix_ms = kAsked;
    const cpuid::Profile skylake = cpuid::test::load("intel-skylake-sp-xeon-gold-6154");
    const cpuid::Profile haswell = cpuid::test::load("intel-haswell-i7-4710mq");
    for (char n : {'a', 'b', 'c'}) {
      NodeSpec spec;
      spec.name = std::string(1, n);
      spec.host_id = static_cast<uint32_t>(n - 'a' + 1);
      spec.listen = addr(n);
      spec.migration_networks = {mig(n)};
      in.config.nodes.push_back(spec);
      NodeResult r;
      r.name = std::string(1, n);
      r.address = addr(n);
      r.probe = n == 'c' ? probe_of(n, haswell, "Intel(R) Core(TM) i7-4710MQ")
                         : probe_of(n, skylake, "Intel(R) Xeon(R) Gold 6154");
      r.asked_unix_ms = kAsked;
      r.answered_unix_ms = kAsked + 10;
      for (char to : {'a', 'b', 'c'})
        if (to != n) r.reach.push_back(ReachResult{r.name, std::string(1, to), mig(to), true, 0.3, ""});
      in.nodes.push_back(r);
    }
    VmSpec web;
    web.name = "web";
    web.mem_bytes = 2ull << 30;
    web.disk = "web-root";
    web.preferred_owners = {"a", "b"};
    web.nics = {{"br-lab", "52:54:00:00:00:01"}};
    VmSpec batch = web;
    batch.name = "batch";
    batch.index = 1;
    batch.disk = "";
    batch.nics.clear();
    batch.mem_bytes = 512ull << 20;
    in.config.vms = {web, batch};
  }
  nlohmann::json& probe(char n) { return *in.nodes[static_cast<size_t>(n - 'a')].probe; }

  ValidateInput in;
};

TEST_F(ClusterValidate, EveryCheckPassesOnAGoodCluster) {
  const nlohmann::json r = validate(in);
  ASSERT_EQ(r["checks"].size(), 11u);
  for (const auto& c : r["checks"]) EXPECT_EQ(c["result"], "pass") << c.dump(2);
  EXPECT_TRUE(r["ok"]);
  EXPECT_EQ(r["nodes"], nlohmann::json({"a", "b", "c"}));
  EXPECT_EQ(r["baseline"]["vendor"], "GenuineIntel");
  EXPECT_EQ(r["baseline"]["weakest_node"], "c");
  const auto& lacks = r["baseline"]["weakest_lacks"];
  EXPECT_NE(std::find(lacks.begin(), lacks.end(), "avx512f"), lacks.end()) << lacks.dump();
  EXPECT_EQ(r["baseline"]["features"], r["baseline"]["feature_names"].size());
}

TEST_F(ClusterValidate, ANodeWithoutAVmNicsBridgeFailsNamingNodeAndBridge) {
  probe('c')["bridges"] = {"docker0"};
  const nlohmann::json r = validate(in);
  EXPECT_FALSE(r["ok"]);
  const auto& c = check(r, "vm_networks");
  EXPECT_EQ(c["result"], "fail") << c.dump(2);
  EXPECT_NE(c["message"].get<std::string>().find("has no bridge br-lab"), std::string::npos) << c.dump(2);
  EXPECT_NE(c["message"].get<std::string>().find("node c"), std::string::npos) << c.dump(2);
  EXPECT_EQ(c["message"].get<std::string>().find("node a"), std::string::npos) << c.dump(2);
}

TEST_F(ClusterValidate, ANodeThatCannotMakeLoopDevicesFailsWhileAVmHasADisk) {
  probe('b')["fencing"]["loop_devices"] = false;
  probe('b')["fencing"]["loop_error"] = "no loop driver (modprobe loop): open /dev/loop-control: No such file or directory";
  const nlohmann::json r = validate(in);
  EXPECT_FALSE(r["ok"]);
  const auto& c = check(r, "fencing");
  EXPECT_EQ(c["result"], "fail") << c.dump(2);
  EXPECT_EQ(c["message"],
            "node b (10.0.0.2:7000) cannot give a VM its volume disk: no loop driver (modprobe loop): open "
            "/dev/loop-control: No such file or directory: a VM with a disk cannot run there");

  in.config.vms[0].disk.clear();  // no VM has a disk: the node could still run every VM
  EXPECT_EQ(check(validate(in), "fencing")["result"], "warn");
}

TEST_F(ClusterValidate, ANodeWithoutAWatchdogIsAWarningThatSaysWhatItCannotStop) {
  probe('c')["fencing"]["watchdog"] = "";
  const nlohmann::json r = validate(in);
  EXPECT_TRUE(r["ok"]) << "a warning, not a failure: without one the lease margin still covers late writes";
  const auto& c = check(r, "fencing");
  EXPECT_EQ(c["result"], "warn") << c.dump(2);
  const std::string m = c["message"];
  EXPECT_NE(m.find("node c (10.0.0.3:7000) has no watchdog"), std::string::npos) << m;
  EXPECT_NE(m.find("cannot stop a VM write stuck in the kernel"), std::string::npos) << m;
  EXPECT_EQ(m.find("node a"), std::string::npos) << m;
}

TEST_F(ClusterValidate, ANodeThatDoesNotReportFencingIsAWarning) {
  probe('a').erase("fencing");
  const nlohmann::json r = validate(in);
  const auto& c = check(r, "fencing");
  EXPECT_EQ(c["result"], "warn") << c.dump(2);
  EXPECT_NE(c["message"].get<std::string>().find("node a (10.0.0.1:7000) does not report its fencing"),
            std::string::npos) << c.dump(2);
}

TEST_F(ClusterValidate, ANodeOnAnotherVolumeFailsNamingBothVolumes) {
  probe('c')["volume"] = {
      {"path", "/tmp/x/other.img"}, {"uuid", "3f2a0000-0000-4000-8000-000000000001"}, {"cluster", "other"}};
  const nlohmann::json r = validate(in);
  EXPECT_FALSE(r["ok"]);
  EXPECT_EQ(check(r, "volume")["result"], "fail");
  EXPECT_EQ(check(r, "volume")["message"],
            "node c (10.0.0.3:7000) uses volume 3f2a0000-0000-4000-8000-000000000001 (/tmp/x/other.img, cluster "
            "\"other\"), not this cluster's volume 9b1c0d2e-1111-4222-8333-444455556666 (cluster \"lab\")");
}

TEST_F(ClusterValidate, AnUnreachableNodeFailsContactAndTheRestStillRuns) {
  in.nodes[2].probe.reset();
  in.nodes[2].error = "connect: Connection refused";
  const nlohmann::json r = validate(in);
  EXPECT_FALSE(r["ok"]);
  EXPECT_EQ(check(r, "contact")["message"], "node c (10.0.0.3:7000) did not answer: connect: Connection refused");
  EXPECT_EQ(check(r, "volume")["result"], "pass") << "the nodes that answered are still checked";
  EXPECT_EQ(r["baseline"]["nodes"], nlohmann::json({"a", "b"}));
}

TEST_F(ClusterValidate, NoAnswerAtAllWarnsInsteadOfCheckingNothing) {
  for (NodeResult& n : in.nodes) n.probe.reset();
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "contact")["result"], "fail");
  EXPECT_EQ(check(r, "kvm")["result"], "warn");
  EXPECT_NE(render_text(r).find("FAILED"), std::string::npos);
}

TEST_F(ClusterValidate, AnUnreachableMigrationNetworkFailsNamingThePath) {
  in.nodes[1].reach[1] = ReachResult{"b", "c", mig('c'), false, 0, "connect: No route to host"};
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "migration_networks")["result"], "fail");
  EXPECT_EQ(check(r, "migration_networks")["message"],
            "node b cannot reach node c on migration network 10.0.2.3:7000: connect: No route to host");
}

TEST_F(ClusterValidate, AVendorMismatchFailsNamingTheOddNode) {
  probe('c')["cpu"] = {{"vendor", "AuthenticAMD"}, {"model_name", "AMD EPYC 7713"}, {"error", ""},
                       {"profile", cpuid::to_json(cpuid::test::load("amd-zen3-epyc-7713"))}};
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "cpu")["result"], "fail");
  EXPECT_EQ(check(r, "cpu")["message"],
            "node c (10.0.0.3:7000) is AuthenticAMD (AMD EPYC 7713), unlike node a, node b (GenuineIntel): "
            "VMs cannot move between vendors");
  EXPECT_EQ(r["baseline"]["nodes"], nlohmann::json({"a", "b"})) << "the baseline of the majority vendor";
}

TEST_F(ClusterValidate, AModelVmThatCannotMoveBetweenNodesFails) {
  in.config.vms[1].cpu_model = "x86-64-v2";  // keeps the host's 46 physical address bits on a Skylake
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "cpu")["result"], "fail");
  EXPECT_NE(check(r, "cpu")["message"].get<std::string>().find(
                "VM batch (CPU model x86-64-v2) started on node a could not move to node c: not compatible: "),
            std::string::npos)
      << check(r, "cpu").dump(2);
  in.config.vms[1].cpu_model = "host";
  EXPECT_EQ(check(validate(in), "cpu")["result"], "warn") << "a host-model VM on unequal nodes";
}

TEST_F(ClusterValidate, AModelANodeCannotGiveFailsAndAnUnknownOneWarns) {
  in.config.vms[1].cpu_model = "x86-64-v4";  // AVX-512: Haswell lacks it
  nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "cpu")["result"], "fail");
  EXPECT_NE(check(r, "cpu")["message"].get<std::string>().find(
                "VM batch (CPU model x86-64-v4) cannot start on node c (10.0.0.3:7000): "),
            std::string::npos)
      << check(r, "cpu").dump(2);
  in.config.vms[1].cpu_model = "pentium-pro";
  r = validate(in);
  EXPECT_EQ(check(r, "cpu")["result"], "warn");
  EXPECT_NE(check(r, "cpu")["message"].get<std::string>().find("VM batch (CPU model pentium-pro) cannot be evaluated"),
            std::string::npos);
}

TEST_F(ClusterValidate, FiveSecondsOfClockSkewFailsAndSaysLeasesDoNotCare) {
  probe('c')["clock_unix_ms"] = kAsked + 5 + 5000;
  const nlohmann::json r = validate(in);
  const std::string msg = check(r, "clock")["message"];
  EXPECT_EQ(check(r, "clock")["result"], "fail");
  EXPECT_EQ(msg.rfind("node c (10.0.0.3:7000)'s clock is 5.0 s ahead of the validating host's (+/- 5 ms)", 0), 0u)
      << msg;
  EXPECT_NE(msg.find("Lease safety never uses wall clocks"), std::string::npos);
  probe('c')["clock_unix_ms"] = kAsked + 5 + 300;
  EXPECT_EQ(check(validate(in), "clock")["result"], "warn");
}

TEST_F(ClusterValidate, SlowLeaseIoWarnsAndTooSlowFails) {
  probe('b')["lease_io"]["p99_us"] = 30'000;  // > 100 ms / 4
  probe('b')["lease_io"]["max_us"] = 30'000;
  EXPECT_EQ(check(validate(in), "lease_io")["result"], "warn");
  probe('c')["lease_io"]["max_us"] = 150'000;
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "lease_io")["result"], "fail");
  EXPECT_EQ(check(r, "lease_io")["message"],
            "node c (10.0.0.3:7000): a lease read took 150.0 ms, longer than the lease I/O timeout (100.0 ms): its "
            "leases would lapse under load");
}

// A renewal (read + write) slower than the 2 x io-timeout that dead - fail allows means a write can
// still be in flight when a survivor takes the lease over: validate fails and names the remedy.
TEST_F(ClusterValidate, ALeaseRenewalSlowerThanTheMarginFails) {
  probe('a')["lease_io"]["slowest_renewal_us"] = 150'000;  // within 2 x 100 ms
  const nlohmann::json ok = validate(in);
  EXPECT_EQ(check(ok, "lease_io")["result"], "pass");
  EXPECT_NE(check(ok, "lease_io").dump().find("slowest renewal since the node started 150.0 ms"), std::string::npos)
      << check(ok, "lease_io").dump();
  probe('a')["lease_io"]["slowest_renewal_us"] = 680'000;
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "lease_io")["result"], "fail");
  EXPECT_EQ(check(r, "lease_io")["message"],
            "node a (10.0.0.1:7000): a lease renewal took 680.0 ms, longer than the 2 x 100.0 ms I/O timeout the "
            "dead - fail margin allows: format the volume with a larger --io-timeout-ms");
}

TEST_F(ClusterValidate, TooLittleMemoryForTheLargestHaVmFails) {
  probe('a')["mem_available_bytes"] = 1ull << 30;
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "memory")["result"], "fail");
  EXPECT_EQ(check(r, "memory")["message"],
            "node a (10.0.0.1:7000) has 1 GiB available, less than the largest HA VM (web, 2 GiB) plus 64 MiB");
}

TEST_F(ClusterValidate, ConfigurationNamingUnknownNodesWarns) {
  in.config.vms[0].preferred_owners.push_back("z");
  in.config.vms[1].disk = "missing-disk";
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "config")["result"], "warn");
  const std::string msg = check(r, "config")["message"];
  EXPECT_NE(msg.find("VM web prefers node z, which is not a node of this cluster"), std::string::npos) << msg;
  EXPECT_NE(msg.find("VM batch's disk missing-disk is not on the volume"), std::string::npos) << msg;
}

TEST_F(ClusterValidate, MissingKvmFailsAndSoftwareKvmWarns) {
  probe('a')["kvm"]["software_kvm_pvm"] = true;
  EXPECT_EQ(check(validate(in), "kvm")["result"], "warn");
  probe('b')["kvm"] = {{"ok", false}, {"error", "cannot open /dev/kvm: No such file or directory"}};
  const nlohmann::json r = validate(in);
  EXPECT_EQ(check(r, "kvm")["result"], "fail");
  EXPECT_EQ(check(r, "kvm")["message"],
            "node b (10.0.0.2:7000): KVM is not usable: cannot open /dev/kvm: No such file or directory");
}

TEST_F(ClusterValidate, HtmlEscapesEverythingAndLoadsNothing) {
  in.nodes[2].name = "<script>alert('x')</script>";
  in.nodes[2].probe.reset();
  in.nodes[2].error = "refused & <b>gone</b>";
  const std::string html = render_html(validate(in));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("refused &amp; &lt;b&gt;gone&lt;/b&gt;"), std::string::npos);
  for (const char* external : {"src=", "href=", "<link", "url(", "@import"})
    EXPECT_EQ(html.find(external), std::string::npos) << external;
  EXPECT_NE(html.find("class=\"fail\""), std::string::npos);
}

TEST_F(ClusterValidate, TextRendersOneLinePerCheckAndTheVerdict) {
  std::string text = render_text(validate(in));
  EXPECT_NE(text.find("PASS  Shared volume:"), std::string::npos) << text;
  EXPECT_NE(text.find("\ncluster lab passed validation\n"), std::string::npos) << text;
  in.nodes[0].reach[0].ok = false;
  text = render_text(validate(in));
  EXPECT_NE(text.find("FAIL  Migration networks:"), std::string::npos) << text;
  EXPECT_NE(text.find("cluster lab FAILED validation: 1 check failed (migration_networks)"), std::string::npos) << text;
}

// --- probe_local on this machine ---------------------------------------------------------------

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/minihv-probe-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

TEST(ClusterProbe, ReportsTheVolumeLeaseLatencyAndMemory) {
  TempDir dir;
  const std::string path = (dir.path / "lab.img").string();
  blockdev::FormatOptions o;
  o.cluster = "lab";
  o.size = 32ull << 20;
  ASSERT_TRUE(blockdev::Volume::format(path, o));
  auto vol = blockdev::Volume::open(path, true);
  ASSERT_TRUE(vol) << vol.message();
  auto slot = (*vol)->node_slot(2);
  ASSERT_TRUE(slot) << slot.message();

  ProbeContext ctx{"b", 2, "127.0.0.1:7000", {"127.0.0.1:7100"}, vol->get(), path, *slot, 256ull << 20};
  const auto before = std::chrono::system_clock::now();
  const nlohmann::json p = probe_local(ctx);
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count();

  EXPECT_EQ(p["node"], "b");
  EXPECT_EQ(p["host_id"], 2);
  EXPECT_EQ(p["pid"], ::getpid());
  EXPECT_EQ(p["volume"]["path"], path);
  EXPECT_EQ(p["volume"]["uuid"], blockdev::uuid_string((*vol)->super().uuid));
  EXPECT_EQ(p["volume"]["cluster"], "lab");
  EXPECT_EQ(p["lease_io"]["reads"], kLeaseProbeReads);
  EXPECT_EQ(p["lease_io"]["error"], "");
  EXPECT_LE(p["lease_io"]["p50_us"].get<int64_t>(), p["lease_io"]["p99_us"].get<int64_t>());
  EXPECT_LE(p["lease_io"]["p99_us"].get<int64_t>(), p["lease_io"]["max_us"].get<int64_t>());
  EXPECT_GT(p["mem_total_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(p["mem_available_bytes"].get<uint64_t>(), 0u);
  EXPECT_LE(p["mem_available_bytes"].get<uint64_t>(), p["mem_total_bytes"].get<uint64_t>());
  EXPECT_EQ(p["vms_mem_bytes"], 256ull << 20);
  EXPECT_NEAR(static_cast<double>(p["clock_unix_ms"].get<int64_t>()), static_cast<double>(now_ms), 60'000.0);
  // KVM may be absent here: the fields exist either way, and an unusable KVM says why.
  ASSERT_TRUE(p["kvm"]["ok"].is_boolean());
  if (!p["kvm"]["ok"]) {
    EXPECT_FALSE(p["kvm"]["error"].get<std::string>().empty());
  }
  EXPECT_FALSE(p["cpu"]["vendor"].get<std::string>().empty());
  // Loop devices as this host has them; no watchdog in this context.
  EXPECT_EQ(p["fencing"]["loop_devices"], std::filesystem::exists("/dev/loop-control")) << p["fencing"].dump();
  EXPECT_EQ(p["fencing"]["loop_error"].get<std::string>().empty(), p["fencing"]["loop_devices"].get<bool>());
  EXPECT_EQ(p["fencing"]["watchdog"], "");

  // The probe's own report validates as a one-node cluster's volume.
  ValidateInput in;
  in.cluster = "lab";
  in.volume_uuid = p["volume"]["uuid"];
  in.nodes.push_back(NodeResult{"b", "127.0.0.1:7000", p, "", now_ms, now_ms, {}});
  EXPECT_EQ(check(validate(in), "volume")["result"], "pass");
}

TEST(ClusterProbe, WithoutAVolumeTheFieldsSayWhy) {
  ProbeContext ctx;
  ctx.node = "solo";
  const nlohmann::json p = probe_local(ctx);
  EXPECT_EQ(p["volume"]["error"], "no volume open");
  EXPECT_EQ(p["lease_io"]["reads"], 0);
  EXPECT_EQ(p["lease_io"]["error"], "no volume open");
}

// A peer's reply that is not a probe (a broken or other-version node) fails that node with a
// reason, on the asking thread, instead of throwing out of it.
TEST(ClusterValidateReply, AMalformedProbeReplyFailsThatNodeWithAReason) {
  for (const nlohmann::json& bad :
       {nlohmann::json{{"progress", 1}}, nlohmann::json::array({1, 2}), nlohmann::json{{"probe", 3}},
        nlohmann::json{{"probe", {{"node", "b"}}}, {"reach", 5}},
        nlohmann::json{{"probe", {{"node", 7}}}}}) {
    NodeResult r;
    r.address = addr('b');
    EXPECT_NO_THROW(read_probe_reply(r, bad)) << bad;
    EXPECT_NE(r.error.find("malformed probe reply"), std::string::npos) << bad << ": " << r.error;
    EXPECT_FALSE(r.probe) << bad;
  }
  NodeResult good;
  good.address = addr('b');
  read_probe_reply(good, {{"ok", true},
                          {"probe", {{"node", "b"}}},
                          {"reach", {{{"from", "b"}, {"to", "a"}, {"network", mig('a')}, {"ok", true}}}}});
  EXPECT_EQ(good.error, "");
  EXPECT_EQ(good.name, "b");
  ASSERT_EQ(good.reach.size(), 1u);
  EXPECT_EQ(good.reach[0].to, "a");
}

}  // namespace
}  // namespace minihv::cluster
