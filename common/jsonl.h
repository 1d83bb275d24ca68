// common/jsonl.h — JSON lines over a stream socket: one JSON object per line each way, progress lines
// ({"progress": true, ...}) before a long request's reply, and commands that turn their connection
// into a raw byte stream after the reply (the console).
//
// Owns: accepting clients (one thread each), framing lines, the limits every peer lives under (line
// length, read timeout, connections at once and per peer address, the TLS handshake's deadline),
// refusing what breaks them with an {"ok": false} line; a server given a key speaks TLS only
// (common/channel.h carries the lines either way).
// Must not know: what a request means (the Handler's), where the socket came from (Unix for a VM's
// control socket, vmm/api.h, plain; TCP for a node, cluster/rpc.h, TLS), where the key came from.
//
// Threading: the Server accepts on its own thread and serves each client on another; a Handler runs
// on its client's thread, so a long request never holds up another client. ~Server stops and joins
// every thread: it shuts every client's socket down, so a Handler's progress and reply writes fail at
// once and a Stream ends (it must return soon after `stop_fd` becomes readable or a write fails); a
// Handler still at work is waited for, so its owner cancels that work before destroying the Server.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/channel.h"
#include "common/fd.h"
#include "common/status.h"
#include "common/tls.h"

namespace minihv::jsonl {

using Json = nlohmann::json;

inline constexpr size_t kDefaultMaxRequestBytes = 64 * 1024;  // requests are short commands
inline constexpr size_t kDefaultMaxReplyBytes = 16u << 20;    // a status of many VMs, with room
// ~Server: how long a handler may still take to write its reply before its client is cut off.
inline constexpr std::chrono::milliseconds kReplyGrace{2000};
// A TLS server: how long a new client has to finish its handshake (a silent one holds a slot no longer).
inline constexpr std::chrono::milliseconds kHandshakeDeadline{3000};
// Refused handshakes logged per second at most (a flood must not fill the log); the next line
// logged says how many were left out.
inline constexpr unsigned kRefusalLogsPerSecond = 10;

// What one server's peers may do. read_timeout: nullopt waits for ever; otherwise a client that has
// not sent a whole line this long after its last one is dropped (with an error line when it had
// begun a request): one that trickles a byte at a time gets no longer than one that says nothing.
// write_timeout: nullopt waits for ever; otherwise a reply or progress line the client does not
// take in this long fails (SO_SNDTIMEO), and the client is dropped.
// max_per_peer: connections one peer address may hold at once (0: no cap beyond max_connections),
// so one host cannot take every slot; the one over it gets an error line and is closed.
struct Limits {
  size_t max_line_bytes = kDefaultMaxRequestBytes;
  std::optional<std::chrono::milliseconds> read_timeout;
  unsigned max_connections = 16;
  std::optional<std::chrono::milliseconds> write_timeout;
  unsigned max_per_peer = 0;
};

// Splits what arrives on a socket into lines of at most `max_line` bytes (the '\n' not counted).
class LineReader {
public:
  enum class Got { kLine, kClosed, kTimeout, kTooLong, kStopped };
  explicit LineReader(size_t max_line) : max_line_(max_line) {}
  // The next line, without its '\n'. Waits at most `timeout` for the whole line, however its bytes
  // arrive (nullopt: for ever); kStopped when `stop_fd` (-1: none) becomes readable first.
  Got next(Channel& ch, std::string& line, std::optional<std::chrono::milliseconds> timeout, int stop_fd = -1);
  Got next(int fd, std::string& line, std::optional<std::chrono::milliseconds> timeout, int stop_fd = -1);
  // Bytes received after the last line returned.
  const std::string& rest() const { return buf_; }

private:
  bool take_line(std::string& line);
  size_t max_line_;
  std::string buf_;
  size_t scanned_ = 0;  // buf_[0, scanned_) holds no '\n'
};

// Writes `j` as one line.
Status write_line(Channel& ch, const Json& j);
Status write_line(int fd, const Json& j);
// {"ok": false, "error": message}
Json error_line(const std::string& message);

using Progress = std::function<void(const Json&)>;  // sends a progress line to the client
using Handler = std::function<Json(const Json& request, const Progress& progress)>;
// A stream command owns the connection after the reply line {"ok":true,"stream":true}; `early`
// holds what the client sent right behind its request line. The connection closes after it.
// Streams are served on plain servers only (a TLS server refuses them with an error line).
using Stream = std::function<void(int fd, int stop_fd, const std::string& early)>;
using StreamOpener = std::function<Result<Stream>(const Json& request)>;
using StreamCommands = std::map<std::string, StreamOpener>;  // by "cmd"

class Server {
public:
  // Serves on `listening` (a bound, listening socket); `name` is for messages only. With `psk`
  // every client must first finish a TLS handshake with that key within kHandshakeDeadline: one
  // that does not speak TLS gets one plain error line, one with another key (or too slow) is
  // closed, and either is logged with its address.
  static Result<std::unique_ptr<Server>> serve(UniqueFd listening, std::string name, Limits limits,
                                               Handler handler, StreamCommands streams = {},
                                               std::optional<tls::Psk> psk = std::nullopt);
  ~Server();  // stops accepting, stops every client, joins every thread
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& name() const { return name_; }
  const Limits& limits() const { return limits_; }

private:
  Server(std::string name, Limits limits, Handler handler, StreamCommands streams);
  void accept_loop();
  void admit(UniqueFd client, const std::string& peer);
  void reap_finished_clients();
  void serve_client(int fd, const std::string& peer);
  std::unique_ptr<Channel> open_channel(int fd, const std::string& peer);
  void log_refusal(const std::string& peer, const std::string& why);
  void serve_lines(Channel& ch);
  bool answer_line(Channel& ch, const std::string& line, const LineReader& reader, const Progress& progress);
  Json answer(const Json& request, const Progress& progress);

  std::string name_;
  Limits limits_;
  Handler handler_;
  StreamCommands streams_;
  std::optional<tls::Psk> psk_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  struct Client {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
    std::shared_ptr<UniqueFd> fd;  // its thread closes it, under clients_mu_ (~Server shuts it down)
  };
  std::mutex clients_mu_;
  std::vector<Client> clients_;
  std::map<std::string, unsigned> per_peer_;  // connections held, by peer address (under clients_mu_)
  std::mutex log_mu_;                         // the refusal log's rate (log_refusal)
  std::chrono::steady_clock::time_point log_second_{};
  unsigned logged_this_second_ = 0, not_logged_ = 0;
  std::atomic<unsigned> active_clients_{0};
  std::thread accept_thread_;  // last: starts once everything above exists
};

// One request on a connected socket, then its reply. Progress lines before the reply go to
// `on_progress` (skipped without one).
struct CallOptions {
  std::chrono::milliseconds silence{10'000};  // longest wait for the next line; a progress line restarts it
  std::optional<std::chrono::steady_clock::time_point> deadline;  // the whole call, when given
  size_t max_line_bytes = kDefaultMaxReplyBytes;                  // a longer reply line is an error

  static CallOptions with_silence(std::chrono::milliseconds s) {
    CallOptions o;
    o.silence = s;
    return o;
  }
};
// `peer` names the other side in errors. `after`, when given, receives the bytes that came right
// behind the reply (a stream's first bytes).
Result<Json> call(Channel& ch, const std::string& peer, const Json& request, const CallOptions& options,
                  const Progress& on_progress = {}, std::string* after = nullptr);
Result<Json> call(int fd, const std::string& peer, const Json& request, const CallOptions& options,
                  const Progress& on_progress = {}, std::string* after = nullptr);

}  // namespace minihv::jsonl
