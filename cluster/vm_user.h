// cluster/vm_user.h — the unprivileged user a node runs its VM processes as (`node --vm-user`).
//
// Owns: resolving USER or UID:GID to ids and supplementary groups, the checks that such a process
// can run a VM at all (not root; /dev/kvm open to it through its group; the state directory
// reachable), and the credential switch in the forked child before exec.
// Must not know: VMs, leases, what the child runs.
// What the VM process then cannot do: signal, ptrace or read the node or other VMs of other users,
// open the volume, the cluster key or the node's own files, or make taps (its node makes them for
// it: vmm/devices/tap.h, make_tap_for; docs/security.md).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace minihv::cluster {

struct VmUser {
  std::string text;  // as given, for messages
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary: USER's groups from /etc/group; none for UID:GID
};

// "NAME" (from the password database) or "UID:GID" (numeric, no entry needed). Refused: unknown
// names, malformed ids, uid or gid 0.
Result<VmUser> resolve_vm_user(const std::string& text);

// Whether `user` may open `path` (/dev/kvm) read-write by its mode bits: as owner, or through its
// gid or a supplementary group. The error says how to give it access.
Status check_device_access(const VmUser& user, const std::string& path);

// Whether `user` can reach `dir` by name: every directory from / down to it searchable (x) by it.
Status check_reachable(const VmUser& user, const std::string& dir);

// In a forked child before exec (raw system calls, async-signal-safe): drops to the user's ids and
// groups; false if any step failed (the child must not exec then).
bool become_vm_user(const VmUser& user);

}  // namespace minihv::cluster
