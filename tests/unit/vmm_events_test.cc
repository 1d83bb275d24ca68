// vmm/events: a VM's "events" stream, through a real control socket (vmm/api.h).
#include <gtest/gtest.h>

#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "cluster/child_output.h"
#include "vmm/api.h"
#include "vmm/events.h"

namespace minihv {
namespace {

using Json = nlohmann::json;

std::string socket_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("minihv-events-") + name + "-" +
                                                     std::to_string(::getpid()) + ".sock")).string();
}

// Reads the stream's lines until it closes (or `want` lines came), at most 5 s.
std::vector<Json> read_events(StreamConnection& c, size_t want = ~size_t{0}) {
  cluster::LineSplitter split(64 * 1024);
  std::vector<Json> out;
  std::string bytes = std::exchange(c.early, {});
  char buf[4096];
  for (;;) {
    for (const auto& line : split.feed(bytes)) out.push_back(Json::parse(line));
    if (out.size() >= want) return out;
    pollfd p{c.fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return out;
    const ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n <= 0) return out;
    bytes.assign(buf, static_cast<size_t>(n));
  }
}

struct EventsServer {
  VmEvents events;
  std::unique_ptr<ApiServer> api;
  explicit EventsServer(const std::string& path) {
    auto s = ApiServer::start(path, [](const Json&, const ApiServer::Progress&) { return Json{{"ok", true}}; },
                              {{"events", events.opener()}});
    EXPECT_TRUE(s) << s.message();
    if (s) api = std::move(s).value();
  }
};

TEST(VmEvents, AWatcherHearsWhatItMissedThenEachNewEventThenTheEnd) {
  EventsServer srv(socket_path("order"));
  srv.events.publish({{"event", "listening"}, {"address", "127.0.0.1:5"}});
  auto c = api_open_stream(srv.api->path(), {{"cmd", "events"}});
  ASSERT_TRUE(c) << c.message();
  auto first = read_events(*c, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0]["address"], "127.0.0.1:5");
  srv.events.publish({{"event", "running"}});
  srv.events.finish({{"event", "ended"}, {"exit", 0}, {"why", "poweroff"}});
  srv.events.publish({{"event", "running"}});  // after the end: never sent
  auto rest = read_events(*c);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0]["event"], "running");
  EXPECT_EQ(rest[1]["event"], "ended");
  EXPECT_EQ(rest[1]["why"], "poweroff");
}

TEST(VmEvents, OnlyTheLastKeptEventsAreReplayed) {
  EventsServer srv(socket_path("kept"));
  for (size_t i = 0; i < VmEvents::kMaxKeptEvents + 10; ++i) srv.events.publish({{"event", "incoming"}, {"i", i}});
  srv.events.finish({{"event", "ended"}});
  auto c = api_open_stream(srv.api->path(), {{"cmd", "events"}});
  ASSERT_TRUE(c) << c.message();
  auto all = read_events(*c);
  ASSERT_EQ(all.size(), VmEvents::kMaxKeptEvents);
  EXPECT_EQ(all.front()["i"], 11);
  EXPECT_EQ(all.back()["event"], "ended");
}

TEST(VmEvents, StoppingTheServerEndsAWatchersStream) {
  auto srv = std::make_unique<EventsServer>(socket_path("stop"));
  auto c = api_open_stream(srv->api->path(), {{"cmd", "events"}});
  ASSERT_TRUE(c) << c.message();
  srv->api.reset();  // joins the stream's thread: it must notice the stop, not wait for an event
  EXPECT_TRUE(read_events(*c).empty());
}

}  // namespace
}  // namespace minihv
