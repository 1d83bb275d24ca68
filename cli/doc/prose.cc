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

const Section kEnvironment = {
    "Environment",
    {{"MINIHV_NODE", "HOST:PORT of the node `minihv cluster` talks to when `--node` is not given "
                     "(default 127.0.0.1:7700)."}}};

const Section kFiles = {
    "Files",
    {{"/run/minihv/NAME/", "A node's state directory (`node --state-dir`): its VMs' consoles, logs "
                           "and control sockets."},
     {"/dev/kvm", "The KVM device; the user needs read and write access to it."}}};

const Section kSeeAlso = {
    "See also",
    {{"", "The documents in the source tree's docs/: cli.md (this page as markdown), vmm.md, "
          "cluster.md, metrics.md, migration-protocol.md, cpu-models.md, volume-format.md. "
          "qemu-system-x86_64(1), virsh(1)."}}};

}  // namespace minihv::cli::doc
