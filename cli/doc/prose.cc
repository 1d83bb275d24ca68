// The hand-written parts of docs/cli.md and minihv.1: what no CLI11 definition says.
#include "cli/doc/clidoc.h"

namespace minihv::cli::doc {

const std::string_view kSummary = "a small KVM hypervisor with live migration and failover";

const Section kDescription = {
    "Description",
    {{"", "minihv boots KVM guests (`run`), moves them live between hosts (`migrate`), looks at and "
          "masks what their CPUID says (`cpuid`), keeps their disks on a shared volume guarded by "
          "leases (`volume`) and runs them as a small failover cluster (`node`, `cluster`)."},
     {"", "Every command takes `--help`; an option follows the command it belongs to. `-v` "
          "(`-vv` for debug) gives more diagnostics on stderr."}}};

const Section kConventions = {
    "Conventions",
    {{"Errors", "Every failure prints one line `minihv: error: ...` on stderr, naming the thing that "
                "failed and, where there is one, the fix; bad input exits 2, other failures exit 1."},
     {"--json", "A command with `--json` prints one JSON object on stdout, also when it fails: "
                "`{\"ok\":false,\"error\":\"...\"}` (the same message as on stderr)."},
     {"Units", "JSON fields carry their unit in their name: sizes in bytes as `*_bytes`, durations in "
               "milliseconds as `*_ms`, wall-clock times as `*_unix_ms`."}}};

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
