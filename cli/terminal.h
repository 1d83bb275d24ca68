// cli/terminal.h — the guest's console on the user's terminal: raw mode and the escape key.
//
// Owns: switching a terminal to raw input and back, reading keystrokes for the guest on a
// thread of its own (`minihv run`), and the escape key. Must not know: where keystrokes go.
#pragma once

#include <termios.h>

#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "common/fd.h"

namespace minihv::cli {

// Ctrl-] (as telnet and virsh): `console` detaches, `run` stops the VM.
constexpr char kEscapeKey = 0x1d;
constexpr const char* kEscapeName = "Ctrl-]";

// Where the escape key is in `keys` (std::string_view::npos when it is not).
inline size_t find_escape(std::string_view keys) { return keys.find(kEscapeKey); }

// Raw input while it lives: every key (Ctrl-C and Ctrl-Z too) reaches the guest unechoed and
// unbuffered. Output processing stays on, so a guest's bare "\n" still starts a new line. The
// saved mode comes back when it is destroyed; on a descriptor that is not a terminal it does nothing.
class RawTerminal {
public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return active_; }

private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

// Reads a terminal on its own thread: keystrokes go to `input`; the escape key calls `on_escape`
// (once; what follows it is not read) and end of file just ends the reading. Stops and joins
// when destroyed.
class TerminalInput {
public:
  TerminalInput(int fd, std::function<void(const std::string&)> input, std::function<void()> on_escape);
  ~TerminalInput();
  TerminalInput(const TerminalInput&) = delete;
  TerminalInput& operator=(const TerminalInput&) = delete;

private:
  void loop();
  int fd_;
  std::function<void(const std::string&)> input_;
  std::function<void()> on_escape_;
  UniqueFd stop_fd_;  // eventfd written by the destructor
  std::thread thread_;
};

}  // namespace minihv::cli
