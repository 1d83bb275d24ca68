#include "tests/harness/harness.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "common/keys.h"
#include "migrate/migration.h"
#include <sstream>
#include <stdexcept>

namespace minihv::test {

std::string minihv_binary() { return std::string(MINIHV_BINARY_DIR) + "/minihv"; }
std::string testguest_elf() { return std::string(MINIHV_BINARY_DIR) + "/guest/testguest.elf"; }
std::string source_dir() { return MINIHV_SOURCE_DIR; }

const std::string& test_key_file() {
  static std::once_flag once;
  static std::string path;
  std::call_once(once, [] {
    char tmpl[] = "/tmp/minihv-test-key-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path = std::string(tmpl) + "/migration.key";
    auto key = keys::write_new_key(path);
    if (!key) throw std::runtime_error("test key: " + key.message());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path(path).parent_path(), ec);
    });
  });
  return path;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/minihv-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
TempDir::~TempDir() {
  // MINIHV_TEST_KEEP=1 keeps every test's directory (logs, consoles, volumes) for a post-mortem.
  if (const char* keep = std::getenv("MINIHV_TEST_KEEP"); keep && *keep == '1') return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

VmProcess::VmProcess(std::vector<std::string> args, std::vector<std::string> env,
                     std::vector<std::string> prefix) {
  start(std::move(args), std::move(env), std::move(prefix), -1);
}

VmProcess::VmProcess(WithTerminal, std::vector<std::string> args) {
  int slave = -1;
  if (openpty(&terminal_, &slave, nullptr, nullptr, nullptr) < 0) throw std::runtime_error("openpty failed");
  termios t{};
  tcgetattr(slave, &t);
  t.c_lflag &= ~static_cast<tcflag_t>(ECHO);  // nobody reads the echo back
  tcsetattr(slave, TCSANOW, &t);
  fcntl(terminal_, F_SETFD, FD_CLOEXEC);
  start(std::move(args), {}, {}, slave);
  close(slave);
}

std::set<std::string> guest_cpuid_flags(const std::string& workload, const std::string& model) {
  VmProcess vm({"run", "--kernel", testguest_elf(), "--cmdline", workload, "--mem", "256M", "--cpus", "1",
                "--cpu-model", model});
  auto line = vm.wait_line("^CPUID flags:", std::chrono::seconds(60));
  EXPECT_TRUE(line) << vm.stdout_text() << vm.stderr_text();
  EXPECT_EQ(vm.wait_exit(std::chrono::seconds(30)), 0) << vm.stderr_text();
  std::set<std::string> names;
  std::istringstream in(line ? line->substr(line->find(':') + 1) : "");
  for (std::string n; in >> n;) names.insert(n);
  return names;
}

std::string proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0) {
      const auto v = line.find_first_not_of(" \t", field.size() + 1);
      return v == std::string::npos ? std::string() : line.substr(v);
    }
  return {};
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int time_stretch() { return std::getenv("MINIHV_HW_LANE") ? kHwLaneStretch : 1; }

std::string stretched_seconds(int seconds) { return std::to_string(seconds * time_stretch()); }

MigrateResult migrate(const std::string& api, const std::string& to, std::vector<std::string> extra,
                      std::vector<std::string> env) {
  constexpr int kWaitSeconds = 180;
  std::vector<std::string> a{"migrate", "--api", api, "--to", to, "--json"};
  a.insert(a.end(), extra.begin(), extra.end());
  if (std::find(extra.begin(), extra.end(), "--max-time") == extra.end() && time_stretch() > 1)
    a.insert(a.end(), {"--max-time", stretched_seconds(static_cast<int>(migrate::kDefaultMaxSeconds))});
  VmProcess m(a, std::move(env));
  MigrateResult r;
  auto rc = m.wait_exit(std::chrono::seconds(kWaitSeconds * time_stretch()));
  r.exit = rc ? *rc : -1;
  r.stderr_text = m.stderr_text();
  auto out = m.stdout_text();
  if (!out.empty()) r.json = nlohmann::json::parse(out, nullptr, false);
  return r;
}

VmProcess::VmProcess(WithPipe, std::vector<std::string> args, std::vector<std::string> env) {
  int in[2];
  if (pipe2(in, O_CLOEXEC) < 0) throw std::runtime_error("pipe failed");
  terminal_ = in[1];
  start(std::move(args), std::move(env), {}, in[0]);  // dup2 onto stdin clears its O_CLOEXEC
  close(in[0]);
}

void VmProcess::close_input() {
  if (terminal_ >= 0) close(terminal_);
  terminal_ = -1;
}

bool VmProcess::type(const std::string& text) {
  return terminal_ >= 0 && write(terminal_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

void VmProcess::start(std::vector<std::string> args, std::vector<std::string> env, std::vector<std::string> prefix,
                      int stdin_fd) {
  int out[2], err[2];
  // Every child migrates over TLS with the test process's key unless the test's env says otherwise
  // (its entries are put after this one).
  env.insert(env.begin(), std::string(kTlsPskEnvName) + "=" + test_key_file());
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    for (auto& e : env) putenv(e.data());
    dup2(stdin_fd >= 0 ? stdin_fd : open("/dev/null", O_RDONLY), STDIN_FILENO);
    std::vector<std::string> full = prefix;
    full.push_back(minihv_binary());
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  out_thread_ = std::thread([this, fd = out[0]] { reader(fd, true); });
  err_thread_ = std::thread([this, fd = err[0]] { reader(fd, false); });
}

VmProcess::~VmProcess() {
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(10));
  }
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
  if (terminal_ >= 0) close(terminal_);
}

void VmProcess::reader(int fd, bool is_stdout) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    std::lock_guard lock(mu_);
    if (!is_stdout) {
      err_.append(buf, static_cast<size_t>(n));
      continue;
    }
    out_partial_.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = out_partial_.find('\n')) != std::string::npos) {
      out_lines_.push_back(out_partial_.substr(0, nl));
      out_partial_.erase(0, nl + 1);
    }
  }
  close(fd);
  std::lock_guard lock(mu_);
  if (is_stdout) {
    if (!out_partial_.empty()) {
      out_lines_.push_back(out_partial_);  // a last line without its newline: still a line to match
      out_unterminated_ = true;
    }
    out_partial_.clear();
    out_closed_ = true;
  }
}

size_t VmProcess::line_count() const {
  std::lock_guard lock(mu_);
  return out_lines_.size();
}

std::optional<std::string> VmProcess::wait_line(const std::string& re, std::chrono::milliseconds timeout,
                                                size_t from) {
  const std::regex rx(re);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t seen = from;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      for (; seen < out_lines_.size(); ++seen)
        if (std::regex_search(out_lines_[seen], rx)) return out_lines_[seen];
      if (out_closed_) return std::nullopt;
    }
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool VmProcess::wait_stderr(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (err_.find(text) != std::string::npos) return true;
    }
    if (exited_ || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<std::string> VmProcess::lines_matching(const std::string& re) const {
  const std::regex rx(re);
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& l : out_lines_)
    if (std::regex_search(l, rx)) out.push_back(l);
  return out;
}

std::string VmProcess::stdout_text() const {
  std::lock_guard lock(mu_);
  std::string s;
  for (const auto& l : out_lines_) s += l + "\n";
  if (out_unterminated_) s.pop_back();  // exactly what the process wrote
  return s + out_partial_;
}

std::string VmProcess::stdout_tail(size_t lines) const {
  std::lock_guard lock(mu_);
  const size_t from = out_lines_.size() > lines ? out_lines_.size() - lines : 0;
  std::string s = from > 0 ? "[... " + std::to_string(from) + " earlier lines]\n" : "";
  for (size_t i = from; i < out_lines_.size(); ++i) s += out_lines_[i] + "\n";
  return s + out_partial_;
}

std::string VmProcess::stderr_text() const {
  std::lock_guard lock(mu_);
  return err_;
}

std::optional<int> VmProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exited_) return status_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      if (out_thread_.joinable()) out_thread_.join();
      if (err_thread_.joinable()) err_thread_.join();
      return status_;
    }
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void VmProcess::kill(int sig) {
  if (!exited_) ::kill(pid_, sig);
}

long last_acknowledged(const VmProcess& vm) {
  long rec = -1;
  for (const auto& line : vm.lines_matching("^HB cpu=0 ")) {
    auto hb = parse_heartbeat(line);
    if (hb && hb->fields.count("rec")) rec = std::stol(hb->fields.at("rec"));
  }
  return rec;
}

std::optional<Heartbeat> parse_heartbeat(const std::string& line) {
  const size_t at = line.find("HB ");
  if (at == std::string::npos) return std::nullopt;
  std::istringstream in(line.substr(at + 3));
  Heartbeat hb;
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    hb.fields[word.substr(0, eq)] = word.substr(eq + 1);
  }
  try {
    hb.cpu = std::stoi(hb.fields.at("cpu"));
    hb.seq = std::stol(hb.fields.at("seq"));
    hb.errs = std::stol(hb.fields.at("errs"));
  } catch (...) {
    return std::nullopt;
  }
  return hb;
}

void make_image(const std::string& path, uint64_t bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) < 0) throw std::runtime_error("make_image " + path);
  close(fd);
}

MinihvRun run_minihv(std::vector<std::string> args, std::vector<std::string> env, std::chrono::milliseconds limit) {
  VmProcess p(std::move(args), std::move(env));
  auto rc = p.wait_exit(limit);
  return {rc.value_or(-1), p.stdout_text(), p.stderr_text()};  // ~VmProcess kills one still running
}

}  // namespace minihv::test
