#include "cluster/vm_user.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

namespace minihv::cluster {

namespace {

constexpr int kMaxGroups = 64;

bool parse_id(const std::string& s, unsigned& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool in_group(const VmUser& u, gid_t g) {
  return u.gid == g || std::find(u.groups.begin(), u.groups.end(), g) != u.groups.end();
}

// The permission bits (rwx, 3 bits) that apply to `u` for a file of this owner and group.
unsigned bits_for(const VmUser& u, const struct stat& st) {
  if (st.st_uid == u.uid) return (st.st_mode >> 6) & 7;
  if (in_group(u, st.st_gid)) return (st.st_mode >> 3) & 7;
  return st.st_mode & 7;
}

}  // namespace

Result<VmUser> resolve_vm_user(const std::string& text) {
  VmUser u;
  u.text = text;
  const std::string what = "--vm-user " + text;
  if (const auto colon = text.find(':'); colon != std::string::npos) {
    unsigned uid = 0, gid = 0;
    if (!parse_id(text.substr(0, colon), uid) || !parse_id(text.substr(colon + 1), gid))
      return Status::invalid(what + ": give a user name or UID:GID (numbers)");
    u.uid = uid;
    u.gid = gid;
  } else {
    const passwd* pw = ::getpwnam(text.c_str());
    if (!pw) return Status::invalid(what + ": no such user (give a user name or UID:GID)");
    u.uid = pw->pw_uid;
    u.gid = pw->pw_gid;
    gid_t groups[kMaxGroups];
    int n = kMaxGroups;
    if (::getgrouplist(text.c_str(), pw->pw_gid, groups, &n) < 0)
      return Status::invalid(what + ": in more than " + std::to_string(kMaxGroups) + " groups");
    for (int i = 0; i < n; ++i)
      if (groups[i] != u.gid) u.groups.push_back(groups[i]);
  }
  if (u.uid == 0 || u.gid == 0 || in_group(u, 0))
    return Status::invalid(what + ": the VM user must not be root or in root's group (that is what it is for)");
  return u;
}

Status check_device_access(const VmUser& u, const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Status::from_errno("--vm-user " + u.text + ": " + path);
  if ((bits_for(u, st) & 6) == 6) return Status::ok();
  return Status::invalid("--vm-user " + u.text + " cannot open " + path + " (owner " + std::to_string(st.st_uid) +
                         ", group " + std::to_string(st.st_gid) + ", mode " +
                         std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                         std::to_string(st.st_mode & 7) + "): give the device a group with rw and put the user in "
                         "it (as Debian's udev does: chgrp kvm /dev/kvm; chmod 660 /dev/kvm; /dev/net/tun is 666)");
}

Status check_reachable(const VmUser& u, const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path full = std::filesystem::absolute(dir, ec);
  std::filesystem::path at = "/";
  for (const auto& part : full.relative_path()) {
    at /= part;
    struct stat st{};
    if (::stat(at.c_str(), &st) != 0) return Status::from_errno(at.string());
    if ((bits_for(u, st) & 1) == 0)
      return Status::invalid("--vm-user " + u.text + " cannot reach " + dir + ": " + at.string() +
                             " is not searchable by it (chmod o+x, or a group it is in)");
  }
  return Status::ok();
}

bool become_vm_user(const VmUser& u) {
  return ::syscall(SYS_setgroups, u.groups.size(), u.groups.data()) == 0 &&
         ::syscall(SYS_setresgid, u.gid, u.gid, u.gid) == 0 && ::syscall(SYS_setresuid, u.uid, u.uid, u.uid) == 0;
}

}  // namespace minihv::cluster
