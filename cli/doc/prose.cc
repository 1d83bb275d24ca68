// The hand-written parts of docs/cli.md and minihv.1: what no CLI11 definition says.
#include "cli/doc/clidoc.h"

namespace minihv::cli::doc {

const std::string_view kSummary = "a small KVM hypervisor with live migration and failover";

const Section kDescription = {
    "Description",
    {{"", "minihv boots KVM guests (`run`), moves them live between hosts (`migrate`), looks at and "
          "masks what their CPUID says (`cpuid`), keeps their disks on a shared volume guarded by "
          "leases (`volume`) and runs them as a small failover cluster (`node`, `cluster`)."},
     {"", "Every command takes `--help`. An option may come anywhere after the command it belongs "
          "to (`minihv cluster status --node X`, `minihv run ... -v`); `-v` (`-vv` for debug) gives "
          "more diagnostics on stderr. Sizes take K, M, G, T (binary) and decimals: `--mem 1.5G`."}}};

const Section kConventions = {
    "Conventions",
    {{"Errors", "Every failure prints one line `minihv: error: ...` on stderr, naming the thing that "
                "failed and, where there is one, the fix; bad input exits 2, other failures exit 1."},
     {"--json", "A command with `--json` prints one JSON object on stdout, also when it fails: "
                "`{\"ok\":false,\"error\":\"...\"}` (the same message as on stderr)."},
     {"Units", "JSON fields carry their unit in their name, one convention everywhere: sizes in bytes as "
               "`*_bytes`, durations in milliseconds as `*_ms` (fractions where finer), wall-clock "
               "times as `*_unix_ms`, rates as `*_mbps` (Mbit/s); only storage latencies measured "
               "in microseconds say `*_us`. Counts have no suffix."}}};

const Section kJsonOutput = {
    "JSON output",
    {{"", "The top-level fields of each command's JSON (a failure is `{\"ok\":false,\"error\":...}`). "
          "A test checks that every field these commands print is listed here."},
     {"vm status", "`ok`, `state` (running, paused, incoming, ...), `pid`, `cpus`, `mem_bytes`, `kernel`, "
                   "`cmdline`, `disks`, `uptime_ms`, `dirty_log` (method), `vcpus` (id, state), `paused_reason` (only "
                   "while a disk error keeps the VM paused), `migration` "
                   "(`in_doubt`, and what is in doubt), `incoming` (an `--incoming` VM that waits: phase, "
                   "address), `cpu` (model, vendor, advisory, features, profile, applied: only with "
                   "`--cpuid`). The control socket's own replies: docs/vmm.md."},
     {"vm stats", "`ok`, `vcpus` (exit counts), `disks` (request counters), `nics` (per NIC: `tap`, `mac`, "
                  "`link_up`, `rx_frames`, `rx_bytes`, `tx_frames`, `tx_bytes`, `rx_dropped`, `tx_dropped`, "
                  "`errors`, `announcements`: RARP frames sent after arriving by migration, `queue_pairs`: the queue pairs the "
                  "guest uses), `console_tx_bytes`, "
                  "`rss_bytes`, `guest_rss_bytes`, `vmm_rss_bytes`."},
     {"ps", "an array of `name`, `pid`, `state`, `mem_bytes`, `cpus`, `api` (null without one), "
            "`uptime_ms`, `kernel`."},
     {"migrate", "`ok`, `result` (ok, failed, in-doubt), `error`, `target`, `tried` (address, ok, error "
                 "per target), `session`, `streams`, `rounds`, `total_ms`, `setup_ms`, `downtime_ms`, "
                 "`downtime_parts` (paused_ms, saved_ms, state_sent_ms, last_page_ms, announced_ms, "
                 "acked_ms, verified_ms, expected_ms, final_pages, state_bytes), `ram_bytes`, `bytes_sent`, "
                 "`throughput_mbps`, `pages` (zero, unchanged, lz4, raw), `hit_rates`, "
                 "`throttle_percent`, `dirty_log` (method, harvests, harvest_ms), `switchover`, "
                 "`verified`, `tls` (what carried the streams: \"user-space TLS (no kernel TLS)\", "
                 "\"kernel TLS send, user-space receive\", \"none (plain TCP, --insecure)\", ...), "
                 "`handshake_ms` (the streams' TLS handshakes, run at once); docs/migration-protocol.md "
                 "says what each part of the downtime is."},
     {"cpuid host", "a profile: `format`, `source`, `vendor`, `leaves` (function, index, eax..edx)."},
     {"cpuid show", "`model`, `vendor`, `cpus`, `advisory`, `reason`, `features`, `model_features`, "
                    "`hidden`, `profile` (loadable by `--guest` and `--model`), `table`."},
     {"cpuid compare", "`compatible`, `vendor_mismatch`, `guest_vendor`, `host_vendor`, `missing`, "
                       "`guest_phys_bits`, `host_phys_bits`."},
     {"volume inspect", "`path`, `format_version`, `uuid`, `cluster`, `size_bytes`, `used_bytes`, "
                        "`data_bytes`, `created_unix_ms`, `created_by`, `config_generation`, `timings_ms` "
                        "(renew, fail, dead, io_timeout), `geometry` (byte offsets of each area on the "
                        "volume: docs/volume-format.md), `disks`, `leases` (resource, offset_bytes, owner, "
                        "renewed_unix_ms, ...), `superblock` (`block_0` and `copy`: \"ok\" or what is wrong "
                        "with each), and `damaged_disk_records` when there are any (slot, record, problem)."},
     {"volume disk list", "an array of `name`, `slot`, `offset_bytes`, `size_bytes`, `created_unix_ms`, "
                          "`lease`."},
     {"cluster status", "`cluster`, `volume_uuid`, `node` (who answered), `unix_ms`, `nodes` (name, "
                        "host_id, state, paused, listen, dead_since_unix_ms), `vms` (name, running, node, "
                        "cpus, mem_bytes, disk, error, last failure), `node_status` (each node's own VMs: "
                        "state, started_unix_ms, heartbeats, errs, ...): docs/cluster.md."},
     {"cluster move", "`vm`, `from`, `to`, `total_ms`, `handoff_ms`, `migration` (as `migrate`)."},
     {"cluster drain", "`moved` (vm, to, total_ms per VM)."},
     {"cluster drill", "`ok`, `node`, `killed_unix_ms`, `detected_ms`, `vms` (vm, node, leased_ms, "
                       "started_ms, first_heartbeat_ms, errs, corrupt, disk_resume, last_acknowledged, ok), "
                       "`error`."},
     {"cluster validate", "`ok` and the report's sections and checks: docs/cluster.md."}}};

const Section kEnvironment = {
    "Environment",
    {{"MINIHV_NODE", "HOST:PORT of the node `minihv cluster` talks to when `--node` is not given "
                     "(default 127.0.0.1:7700)."},
     {"MINIHV_KEY", "The cluster key file of `minihv node` and `minihv cluster` when `--key` is not given "
                    "(default /etc/minihv/cluster.key)."}}};

const Section kFiles = {
    "Files",
    {{"/run/minihv/NAME/", "A node's state directory (`node --state-dir`): its VMs' consoles, logs "
                           "and control sockets."},
     {"/etc/minihv/cluster.key", "The cluster key (`minihv cluster init-key`), mode 0600, the same on every "
                                 "node and CLI host; node RPC is TLS keyed by it. Never on the shared volume."},
     {"/var/lib/minihv/images/", "Where a node boots VMs' kernels and initrds from (`node --images`)."},
     {"/dev/kvm", "The KVM device; the user needs read and write access to it."}}};

const Section kSeeAlso = {
    "See also",
    {{"", "The documents in the source tree's docs/: cli.md (this page as markdown), vmm.md, "
          "cluster.md, metrics.md, migration-protocol.md, cpu-models.md, volume-format.md. "
          "qemu-system-x86_64(1), virsh(1)."}}};

}  // namespace minihv::cli::doc
