// vmm/console_hub.h — the guest console's attached clients (`minihv console`), beside stdout.
//
// Owns: each attached client's queue of console output, its bound, and the byte pump between a
// client's connection and the guest's serial port. The UART hands every transmitted byte to
// publish(), on a vCPU thread: that never blocks and never waits for a client. A client that
// stops reading has at most kClientQueue bytes queued; what comes after is dropped (the newest
// bytes, counted), and when it reads again it first gets a line saying how many were lost.
// Must not know: the control socket's protocol (the pump gets a connected fd), terminals.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/fd.h"

namespace minihv {

class ConsoleHub {
public:
  static constexpr size_t kClientQueue = 256 * 1024;

  // One attached client's queue; detaches itself when destroyed.
  class Client {
  public:
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    int wake_fd() const { return wake_.get(); }  // readable when output is queued
    // Everything queued (a "bytes dropped" note first when some were), and clears the wake-up.
    std::string take();

  private:
    friend class ConsoleHub;
    explicit Client(ConsoleHub& hub);
    void push(const char* data, size_t n);  // hub's lock held
    ConsoleHub& hub_;
    UniqueFd wake_;  // eventfd
    std::mutex mu_;
    std::string queue_;
    uint64_t dropped_ = 0;
  };

  ConsoleHub() = default;
  ConsoleHub(const ConsoleHub&) = delete;
  ConsoleHub& operator=(const ConsoleHub&) = delete;

  // Nullptr only when no eventfd could be made.
  std::unique_ptr<Client> attach();
  // Guest output for every attached client.
  void publish(const char* data, size_t n);
  size_t clients() const { return count_.load(); }

private:
  void detach(Client* c);
  std::mutex mu_;
  std::vector<Client*> clients_;
  std::atomic<size_t> count_{0};  // lets publish() skip the lock when nobody listens
};

// Moves bytes both ways between a connected client `fd` and the console until the client hangs
// up or `stop_fd` becomes readable: `client`'s output to the socket, what the client sends (and
// `early`, bytes that arrived with its request) to `input`. Never blocks on a client that stops
// reading: sending waits in poll() beside stop_fd.
void pump_console(int fd, int stop_fd, ConsoleHub::Client& client,
                  const std::function<void(const std::string&)>& input, const std::string& early);

}  // namespace minihv
