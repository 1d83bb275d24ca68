// `minihv volume format|inspect|disk create|list|rm`: the shared volume from the command line.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "blockdev/volume.h"
#include "cli/commands.h"
#include "cli/report.h"
#include "common/json_text.h"
#include "common/units.h"

namespace minihv::cli {

namespace {

using blockdev::Volume;

std::string when(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const time_t t = static_cast<time_t>(unix_ms / 1000);
  tm tmv{};
  localtime_r(&t, &tmv);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tmv);
  return buf;
}

std::string lease_text(const nlohmann::json& l) {
  const std::string state = l.value("state", "?");
  if (state == "damaged") return "DAMAGED (" + l.value("record", "") + ")";
  if (state == "held")
    return "held by " + l.value("owner", "?") + " since " + when(l.value("acquired_unix_ms", int64_t{0})) +
           " (renewed " + std::to_string(l.value("renewed_ms_ago", int64_t{0})) + " ms ago)";
  if (l.value("generation", 0) == 0) return "free";
  return "free (last held by " + l.value("last_owner", "?") + ", released " +
         when(l.value("released_unix_ms", int64_t{0})) + ")";
}

struct FormatArgs {
  std::string path, size, cluster;
  bool force = false, yes = false;
  int renew_ms = 0, fail_ms = 0, dead_ms = 0, io_ms = 0;
};

// Asks on the terminal before --force destroys a volume (--yes: never asks).
Status confirm_destroy(const std::string& path) {
  std::fprintf(stderr, "minihv: %s is a minihv volume: formatting it destroys every disk on it. Format it? [y/N] ",
               path.c_str());
  std::string answer;
  std::getline(std::cin, answer);
  if (answer == "y" || answer == "Y" || answer == "yes") return Status::ok();
  return Status::error("not confirmed: " + path + " was left as it was");
}

int format(const FormatArgs& a) {
  blockdev::FormatOptions o;
  if (a.force && !a.yes && Volume::looks_like_volume(a.path)) {
    if (!isatty(STDIN_FILENO))
      return fail(Status::invalid(a.path + " is a minihv volume and --force would destroy it: pass --yes as well "
                                           "to confirm (no terminal to ask on)"));
    o.confirm = [path = a.path] { return confirm_destroy(path); };
  }
  if (!a.size.empty()) {
    auto size = parse_size(a.size);
    if (!size) return fail(size.status().context("--size"));
    o.size = *size;
  }
  o.cluster = a.cluster;
  o.force = a.force;
  if (a.renew_ms) o.timings.renew = blockdev::Millis(a.renew_ms);
  if (a.fail_ms) o.timings.fail = blockdev::Millis(a.fail_ms);
  if (a.dead_ms) o.timings.dead = blockdev::Millis(a.dead_ms);
  if (a.io_ms) o.timings.io_timeout = blockdev::Millis(a.io_ms);
  if (Status s = Volume::format(a.path, o); !s) return fail(s);
  auto v = Volume::open(a.path, false);
  if (!v) return fail(v.status());
  const auto& sb = (*v)->super();
  std::printf("formatted %s: cluster %s, uuid %s, %s, %s for disks\n", a.path.c_str(), sb.cluster.c_str(),
              blockdev::uuid_string(sb.uuid).c_str(), format_size(sb.geo.volume_size).c_str(),
              format_size(sb.geo.volume_size - sb.geo.data_start).c_str());
  return kExitOk;
}

int inspect(const std::string& path, bool json) {
  auto v = Volume::open(path, false);
  if (!v) return fail(v.status(), json);
  auto j = (*v)->inspect();
  if (!j) return fail(j.status(), json);
  if (json) {
    std::printf("%s\n", json_text(*j, 2).c_str());
    return kExitOk;
  }
  const auto& t = (*j)["timings_ms"];
  std::printf("volume   %s\nformat   version %d\nuuid     %s\ncluster  %s\nsize     %s (%s used by %zu disks)\n"
              "created  %s by %s\nleases   renew %d ms, fail %d ms, dead %d ms, io-timeout %d ms\n",
              path.c_str(), (*j)["format_version"].get<int>(), (*j)["uuid"].get<std::string>().c_str(),
              (*j)["cluster"].get<std::string>().c_str(), format_size((*j)["size_bytes"]).c_str(),
              format_size((*j)["used_bytes"]).c_str(), (*j)["disks"].size(),
              when((*j)["created_unix_ms"]).c_str(), (*j)["created_by"].get<std::string>().c_str(),
              t["renew"].get<int>(), t["fail"].get<int>(), t["dead"].get<int>(), t["io_timeout"].get<int>());
  std::printf("\nDISK                 SIZE        OFFSET        LEASE\n");
  for (const auto& d : (*j)["disks"])
    std::printf("%-20s %-11s %-13llu %s\n", d["name"].get<std::string>().c_str(), format_size(d["size_bytes"]).c_str(),
                static_cast<unsigned long long>(d["offset_bytes"].get<uint64_t>()), lease_text(d["lease"]).c_str());
  if ((*j)["disks"].empty()) std::printf("(none)\n");
  std::printf("\nLEASES (ever used)\n");
  for (const auto& l : (*j)["leases"])
    std::printf("%-20s %s\n", l["resource"].get<std::string>().c_str(), lease_text(l).c_str());
  if ((*j)["leases"].empty()) std::printf("(none)\n");
  if (j->contains("damaged_disk_records"))
    for (const auto& d : (*j)["damaged_disk_records"])
      std::printf("WARNING: disk-table slot %d is %s%s; it is ignored\n", d["slot"].get<int>(),
                  d["record"].get<std::string>().c_str(),
                  d.contains("problem") ? (": " + d["problem"].get<std::string>()).c_str() : "");
  const auto& sbs = (*j)["superblock"];
  if (sbs["block_0"] != "ok") std::printf("WARNING: superblock: %s\n", sbs["block_0"].get<std::string>().c_str());
  if (sbs["copy"] != "ok")
    std::printf("WARNING: the superblock's second copy is %s (a volume formatted before minihv kept one shows blank)\n",
                sbs["copy"].get<std::string>().c_str());
  return kExitOk;
}

int disk_create(const std::string& path, const std::string& name, const std::string& size_text) {
  auto size = parse_size(size_text);
  if (!size) return fail(size.status().context("--size"));
  auto v = Volume::open(path, true);
  if (!v) return fail(v.status());
  auto d = (*v)->create_disk(name, *size, blockdev::default_owner());
  if (!d) return fail(d.status());
  std::printf("created disk %s: %s at offset %llu; use it with: minihv run --disk %s:%s\n", d->name.c_str(),
              format_size(d->size).c_str(), static_cast<unsigned long long>(d->offset), path.c_str(),
              d->name.c_str());
  return kExitOk;
}

int disk_list(const std::string& path, bool json) {
  auto v = Volume::open(path, false);
  if (!v) return fail(v.status(), json);
  auto j = (*v)->inspect();
  if (!j) return fail(j.status(), json);
  if (json) {
    std::printf("%s\n", json_text((*j)["disks"], 2).c_str());
    return kExitOk;
  }
  for (const auto& d : (*j)["disks"])
    std::printf("%-20s %-11s %s\n", d["name"].get<std::string>().c_str(), format_size(d["size_bytes"]).c_str(),
                lease_text(d["lease"]).c_str());
  return kExitOk;
}

int disk_rm(const std::string& path, const std::string& name) {
  auto v = Volume::open(path, true);
  if (!v) return fail(v.status());
  if (Status s = (*v)->remove_disk(name, blockdev::default_owner()); !s) return fail(s);
  std::printf("removed disk %s\n", name.c_str());
  return kExitOk;
}

}  // namespace

std::vector<Command> add_volume_commands(CLI::App& app) {
  CLI::App* vol = app.add_subcommand("volume", "The shared volume: format, inspect, virtual disks");
  vol->require_subcommand(1);
  std::vector<Command> out;

  auto f = std::make_shared<FormatArgs>();
  CLI::App* fmt = vol->add_subcommand("format", "Make PATH (a file or block device) a minihv volume");
  fmt->add_option("path", f->path, "Volume file or block device")->required();
  fmt->add_option("--size", f->size, "Size, e.g. 8G (creates or resizes a file; not for a block device)");
  fmt->add_option("--cluster", f->cluster, "Cluster name stored in the volume")->required();
  fmt->add_flag("--force", f->force,
                "Overwrite an existing volume or a non-empty file (refused while a live holder has a lease on "
                "the volume; asks first on a terminal)");
  fmt->add_flag("--yes", f->yes, "Do not ask before --force destroys a volume (for scripts)");
  fmt->add_option("--renew-ms", f->renew_ms, "Lease renew interval (default 200)");
  fmt->add_option("--fail-ms", f->fail_ms, "A holder stops its own I/O after this long without renewal (default 800)");
  fmt->add_option("--dead-ms", f->dead_ms, "Others take over a lease unchanged this long (default 1400)");
  fmt->add_option("--io-timeout-ms", f->io_ms, "Longest a lease I/O may take (default 100)");
  out.push_back({fmt, [f] { return format(*f); }});

  auto ip = std::make_shared<std::pair<std::string, bool>>();
  CLI::App* ins = vol->add_subcommand("inspect", "Show a volume: geometry, timings, disks, who holds which lease");
  ins->add_option("path", ip->first, "Volume")->required();
  ins->add_flag("--json", ip->second, "One JSON object");
  out.push_back({ins, [ip] { return inspect(ip->first, ip->second); }});

  CLI::App* disk = vol->add_subcommand("disk", "Virtual disks on a volume");
  disk->require_subcommand(1);
  auto c = std::make_shared<std::array<std::string, 3>>();
  CLI::App* create = disk->add_subcommand("create", "Create a disk (an extent of the volume, zeroed)");
  create->add_option("path", (*c)[0], "Volume")->required();
  create->add_option("name", (*c)[1], "Disk name (letters, digits, . _ -)")->required();
  create->add_option("--size", (*c)[2], "Size, e.g. 1G (rounded up to 1 MiB)")->required();
  out.push_back({create, [c] { return disk_create((*c)[0], (*c)[1], (*c)[2]); }});

  auto l = std::make_shared<std::pair<std::string, bool>>();
  CLI::App* list = disk->add_subcommand("list", "List disks and who holds each");
  list->add_option("path", l->first, "Volume")->required();
  list->add_flag("--json", l->second, "A JSON array");
  out.push_back({list, [l] { return disk_list(l->first, l->second); }});

  auto r = std::make_shared<std::pair<std::string, std::string>>();
  CLI::App* rm = disk->add_subcommand("rm", "Remove a disk (refused while a VM holds its lease)");
  rm->add_option("path", r->first, "Volume")->required();
  rm->add_option("name", r->second, "Disk name")->required();
  out.push_back({rm, [r] { return disk_rm(r->first, r->second); }});
  return out;
}

}  // namespace minihv::cli
