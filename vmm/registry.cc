#include "vmm/registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "common/fd.h"
#include "common/json_text.h"

namespace minihv::registry {

namespace {

constexpr mode_t kDirMode = 0700;   // records name control sockets: only root (the owner) lists them
constexpr mode_t kFileMode = 0600;
constexpr int kStartTimeField = 22;  // proc(5): starttime, clock ticks after boot
constexpr const char* kSuffix = ".json";

// mkdir -p, new components mode 0700; existing ones are left as they are.
Status make_dirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), kDirMode) < 0 && errno != EEXIST) return Status::from_errno("creating " + part);
  }
  return Status::ok();
}

Status write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::from_errno("write");
    off += static_cast<size_t>(n);
  }
  return Status::ok();
}

// Written to a temporary name, then renamed: a reader sees the old record or the new, never half.
Status write_record(const std::string& path, const VmRecord& r) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode));
  if (!fd.valid()) return Status::from_errno("creating " + tmp);
  if (Status s = write_all(fd.get(), json_text(to_json(r)) + "\n"); !s) {
    ::unlink(tmp.c_str());
    return s.context(tmp);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    const Status s = Status::from_errno("renaming " + tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::ok();
}

std::optional<VmRecord> read_record(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  auto j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  auto r = record_from_json(j);
  if (!r) return std::nullopt;
  return *r;
}

bool is_live(const VmRecord& r) {
  auto ticks = process_start_ticks(r.pid);
  return ticks && *ticks == r.start_ticks;
}

}  // namespace

nlohmann::json to_json(const VmRecord& r) {
  return {{"pid", r.pid},         {"start_ticks", r.start_ticks}, {"name", r.name},
          {"state", r.state},     {"mem_bytes", r.mem_bytes},     {"cpus", r.cpus},
          {"api", r.api},         {"kernel", r.kernel},           {"started_unix", r.started_unix}};
}

Result<VmRecord> record_from_json(const nlohmann::json& j) {
  const auto whole = [&](const char* k) { return j.contains(k) && j[k].is_number_integer() && j[k] >= 0; };
  if (!j.is_object() || !whole("pid") || !whole("start_ticks"))
    return Status::error("not a VM record (pid and start_ticks are required)");
  try {
    VmRecord r;
    r.pid = j["pid"].get<pid_t>();
    r.start_ticks = j["start_ticks"].get<uint64_t>();
    r.name = j.value("name", "");
    r.state = j.value("state", "running");
    r.mem_bytes = j.value("mem_bytes", uint64_t{0});
    r.cpus = j.value("cpus", 0u);
    r.api = j.value("api", "");
    r.kernel = j.value("kernel", "");
    r.started_unix = j.value("started_unix", int64_t{0});
    return r;
  } catch (const nlohmann::json::exception& e) {
    return Status::error(std::string("malformed VM record: ") + e.what());
  }
}

std::string run_dir() {
  const char* env = std::getenv(kRunDirEnv);
  return env && *env ? env : kDefaultRunDir;
}

Result<uint64_t> process_start_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!f || !std::getline(f, line)) return Status::error("no process " + std::to_string(pid));
  // Field 2 (comm) is in parentheses and may hold spaces or ')': fields 3.. follow the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return Status::error("unreadable /proc/" + std::to_string(pid) + "/stat");
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  for (int i = 3; i <= kStartTimeField; ++i)
    if (!(rest >> field)) return Status::error("short /proc/" + std::to_string(pid) + "/stat");
  try {
    return static_cast<uint64_t>(std::stoull(field));
  } catch (const std::exception&) {
    return Status::error("unreadable start time in /proc/" + std::to_string(pid) + "/stat");
  }
}

Result<Registration> Registration::create(const std::string& dir, VmRecord record) {
  record.pid = ::getpid();
  auto ticks = process_start_ticks(record.pid);
  if (!ticks) return ticks.status();
  record.start_ticks = *ticks;
  record.started_unix = static_cast<int64_t>(std::time(nullptr));
  MINIHV_TRY(make_dirs(dir));
  std::string path = dir + "/" + std::to_string(record.pid) + kSuffix;
  MINIHV_TRY(write_record(path, record));
  return Registration(std::move(path), std::move(record));
}

Registration::Registration(Registration&& o) noexcept
    : path_(std::exchange(o.path_, std::string())), record_(std::move(o.record_)) {}

Registration::~Registration() {
  if (!path_.empty()) ::unlink(path_.c_str());
}

Status Registration::set_state(const std::string& state) {
  record_.state = state;
  return write_record(path_, record_);
}

Status Registration::set_running(uint64_t mem_bytes, unsigned cpus) {
  record_.state = "running";
  record_.mem_bytes = mem_bytes;
  record_.cpus = cpus;
  return write_record(path_, record_);
}

Result<std::vector<VmRecord>> list_live(const std::string& dir) {
  std::vector<VmRecord> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d && errno == ENOENT) return out;
  if (!d) return Status::from_errno("reading the VM registry " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > std::string(kSuffix).size() && name.ends_with(kSuffix)) names.push_back(name);
  }
  ::closedir(d);
  for (const auto& name : names) {
    const std::string path = dir + "/" + name;
    auto r = read_record(path);
    if (r && name == std::to_string(r->pid) + kSuffix && is_live(*r)) {
      out.push_back(std::move(*r));
      continue;
    }
    // A record being replaced is renamed over, never removed: one that fails to read was
    // written by a process that died mid-write, or by no minihv at all.
    if (!r || !is_live(*r)) ::unlink(path.c_str());
  }
  std::sort(out.begin(), out.end(), [](const VmRecord& a, const VmRecord& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace minihv::registry
