// The client engine (Channel, ClientCall) against the server engine
// (Server, ServerCall) over real loopback sockets, driven by a bare Reactor
// on grpc_green's own libev loop: no interpreter, no greenlets.
//
// The test server answers from the engine's hooks: it echoes each request
// message back, and a request's metadata may ask for a status
// ("x-status" / "x-details") or for silence ("x-hang").
#include <errno.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "Channel.hpp"
#include "Server.hpp"

namespace grpc_green {
namespace {

using std::string;

ReactorRef NewReactor() {
  auto io = NewNativeIoManager();
  if (!io) return ReactorRef();
  return ReactorRef::Adopt(new Reactor(std::move(io)));
}

// Runs reactor passes until `done()` or `timeout` seconds.
bool RunUntil(Reactor* r, const std::function<bool()>& done, double timeout = 5) {
  double until = MonotonicNow() + timeout;
  while (!done()) {
    if (MonotonicNow() > until) return false;
    r->FlushDirty();
    r->ReapGraveyard(false);
    r->io().RunOnce(true);
    if (!done()) {
      r->FlushDirty();
      // A short wait: a pass that had nothing to do must not spin.
      usleep(200);
    }
  }
  return true;
}

// ------------------------------------------------------------- the server

class EchoCall final : public ServerCall {
 public:
  std::vector<string> requests;
  bool dispatched = false;
  bool closed_seen = false;

  // Echoes what has arrived; at the end of the requests, the status.
  void Pump() {
    if (!active()) return;
    while (has_message()) {
      requests.push_back(TakeMessage());
      if (!hang_) Write(requests.back().data(), requests.back().size());
    }
    if (requests_done() && !hang_) {
      Headers trailing = {{"x-trailer", "t"}};
      Finish(status_, details_, trailing);
    }
  }
  void Configure() {
    if (const string* v = FindHeader(headers, "x-status")) status_ = std::stoi(*v);
    if (const string* v = FindHeader(headers, "x-details")) details_ = *v;
    hang_ = FindHeader(headers, "x-hang") != nullptr;
    if (const string* v = FindHeader(headers, "x-echo")) SendInitialMetadata({{"x-echo", *v}});
  }

 protected:
  void OnReadable() noexcept override {
    if (!dispatched) return;
    try {
      Pump();
    } catch (const std::bad_alloc&) {
      Cancel();  // a handler that failed: the client sees the call cancelled
    }
  }

 private:
  int status_ = kOk;
  string details_;
  bool hang_ = false;
};

class EchoServer final : public Server::Delegate {
 public:
  explicit EchoServer(ReactorRef reactor, ServerOptions opts = {})
      : server(std::move(reactor), this, opts) {}

  ServerCall* NewCall() override { return new EchoCall(); }
  bool OnCall(ServerCall* call) noexcept override {
    auto* c = static_cast<EchoCall*>(call);
    try {
      calls.reserve(calls.size() + 1);
      methods.emplace_back(c->method());
      c->Configure();
    } catch (const std::bad_alloc&) {
      return false;  // the handler could not start
    }
    c->dispatched = true;
    c->Retain();
    calls.push_back(c);
    try {
      c->Pump();
    } catch (const std::bad_alloc&) {
      c->Cancel();
    }
    return true;
  }
  void OnCallClosed(ServerCall* call) noexcept override {
    static_cast<EchoCall*>(call)->closed_seen = true;
  }
  void OnTerminated() noexcept override { terminated = true; }
  ~EchoServer() {
    for (EchoCall* c : calls) c->Release();
  }

  Server server;
  std::vector<string> methods;
  std::vector<EchoCall*> calls;
  bool terminated = false;
};

// ------------------------------------------------------------- the client

// Hooks only count, as the greenlet bindings only wake: messages are taken
// outside them, by Drain().
class TestCall final : public ClientCall {
 public:
  explicit TestCall(bool unary_response) : ClientCall(unary_response) {}
  int done_hooks = 0;
  int metadata_hooks = 0;
  int response_hooks = 0;
  std::vector<string> responses;

  // Takes what has arrived; returns how many responses there are now.
  size_t Drain() {
    while (has_message()) responses.push_back(TakeMessage());
    return responses.size();
  }

 protected:
  void OnInitialMetadata() noexcept override { ++metadata_hooks; }
  void OnResponse() noexcept override { ++response_hooks; }
  void OnDone() noexcept override { ++done_hooks; }
};

class Engine : public ::testing::Test {
 protected:
  void SetUp() override {
    reactor = NewReactor();
    ASSERT_TRUE(reactor);
    server = std::make_unique<EchoServer>(reactor);
    string err;
    port = server->server.AddPort("127.0.0.1:0", &err);
    ASSERT_GT(port, 0) << err;
    server->server.Start();
    channel =
        std::make_unique<Channel>(reactor, "127.0.0.1:" + std::to_string(port), ChannelOptions());
  }
  void TearDown() override {
    for (auto& c : calls) reactor->DeferDelete(c.release());
    channel.reset();
    server.reset();
    if (reactor)
      RunUntil(
          reactor.get(), [] { return false; }, 0.01);
  }

  TestCall* Unary(const string& request, Headers md = {}, double timeout = 5,
                  const string& path = "/test.Echo/Unary") {
    calls.push_back(std::make_unique<TestCall>(true));
    TestCall* call = calls.back().get();
    CallArgs args;
    args.path = path;
    args.timeout = timeout;
    args.metadata = &md;
    args.message = request.data();
    args.message_len = request.size();
    args.has_message = true;
    channel->Start(call, args);
    return call;
  }

  bool Finish(TestCall* call, double timeout = 5) {
    return RunUntil(
        reactor.get(), [call] { return call->done(); }, timeout);
  }

  ReactorRef reactor;
  std::unique_ptr<EchoServer> server;
  std::unique_ptr<Channel> channel;
  std::vector<std::unique_ptr<TestCall>> calls;
  int port = 0;
};

TEST_F(Engine, UnaryCallOverLoopback) {
  TestCall* call = Unary("hello", {{"x-echo", "v"}});
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kOk) << call->details();
  ASSERT_TRUE(call->has_message());
  EXPECT_EQ(call->TakeMessage(), "hello");
  EXPECT_EQ(call->done_hooks, 1);
  ASSERT_NE(call->initial_headers(), nullptr);
  EXPECT_EQ(*FindHeader(*call->initial_headers(), "x-echo"), "v");
  ASSERT_NE(call->trailing_headers(), nullptr);
  EXPECT_EQ(*FindHeader(*call->trailing_headers(), "x-trailer"), "t");
  EXPECT_EQ(server->methods, std::vector<string>{"/test.Echo/Unary"});
  // Calls after the first reuse the connection.
  TestCall* again = Unary("again");
  ASSERT_TRUE(Finish(again));
  EXPECT_EQ(again->TakeMessage(), "again");
}

TEST_F(Engine, StatusAndDetailsFromTheServer) {
  TestCall* call = Unary("x", {{"x-status", "5"}, {"x-details", "not here"}});
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kNotFound);
  EXPECT_EQ(call->details(), "not here");
}

TEST_F(Engine, StreamingBothWays) {
  calls.push_back(std::make_unique<TestCall>(false));
  TestCall* call = calls.back().get();
  CallArgs args;
  args.path = "/test.Echo/Bidi";
  channel->Start(call, args);
  EXPECT_FALSE(call->done());
  std::vector<string> sent;
  for (int i = 0; i < 200; ++i) {
    sent.push_back("message " + std::to_string(i) + string(static_cast<size_t>(i) * 50, 'x'));
    ASSERT_TRUE(call->Write(sent.back().data(), sent.back().size()));
    if (call->send_blocked()) {
      ASSERT_TRUE(RunUntil(reactor.get(), [call] { return !call->send_blocked(); }));
    }
  }
  // Every message comes back before the request stream ends.
  ASSERT_TRUE(RunUntil(reactor.get(), [&] { return call->Drain() == sent.size(); }));
  EXPECT_FALSE(call->done());
  call->DoneWriting();
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kOk) << call->details();
  EXPECT_EQ(call->responses, sent);
  EXPECT_EQ(call->done_hooks, 1);
}

TEST_F(Engine, DeadlineEndsTheCallOnBothSides) {
  TestCall* call = Unary("x", {{"x-hang", "1"}}, 0.05);
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kDeadlineExceeded);
  EXPECT_EQ(call->details(), "Deadline Exceeded");
  ASSERT_EQ(server->calls.size(), 1u);
  EchoCall* s = server->calls[0];
  ASSERT_TRUE(RunUntil(reactor.get(), [s] { return s->closed_seen; }));
  EXPECT_FALSE(s->active());
  EXPECT_GT(s->deadline(), 0);
}

TEST_F(Engine, PathWithoutLeadingSlashReachesTheServer) {
  TestCall* call = Unary("x", {}, 5, "test.Echo/NoSlash");
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kOk) << call->details();
  EXPECT_EQ(server->methods, std::vector<string>{"test.Echo/NoSlash"});
}

TEST_F(Engine, CallsWaitForTheConnectionAndGoOutInOrder) {
  // All started before the first pass: they wait in the channel's pending
  // list while it connects.
  std::vector<TestCall*> started;
  for (int i = 0; i < 5; ++i) started.push_back(Unary("m" + std::to_string(i)));
  for (TestCall* c : started) EXPECT_FALSE(c->done());
  for (TestCall* c : started) ASSERT_TRUE(Finish(c));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(started[i]->TakeMessage(), "m" + std::to_string(i));
  EXPECT_EQ(server->methods.size(), 5u);
}

TEST_F(Engine, SendLimitEndsTheCallBeforeAnythingGoesOut) {
  ChannelOptions opts;
  opts.max_send = 3;
  channel = std::make_unique<Channel>(reactor, "127.0.0.1:" + std::to_string(port), opts);
  TestCall* call = Unary("four");
  EXPECT_TRUE(call->done());
  EXPECT_EQ(call->code(), kResourceExhausted);
  EXPECT_EQ(call->details(), "Sent message larger than max (4 vs. 3)");
  EXPECT_TRUE(server->methods.empty());
}

TEST_F(Engine, ServerSendLimit) {
  ServerOptions opts;
  opts.max_send = 3;
  server = std::make_unique<EchoServer>(reactor, opts);
  string err;
  int p = server->server.AddPort("127.0.0.1:0", &err);
  ASSERT_GT(p, 0) << err;
  server->server.Start();
  channel = std::make_unique<Channel>(reactor, "127.0.0.1:" + std::to_string(p), ChannelOptions());
  TestCall* call = Unary("four");
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kResourceExhausted);
  EXPECT_EQ(call->details(), "Sent message larger than max (4 vs. 3)");
}

TEST_F(Engine, RefusedConnectionFailsFastCalls) {
  // A port nobody listens on: bind one, note it, close it.
  string err;
  std::vector<int> fds;
  int dead = OpenListeners("127.0.0.1:0", false, &fds, &err);
  ASSERT_GT(dead, 0) << err;
  for (int fd : fds) close(fd);
  channel =
      std::make_unique<Channel>(reactor, "127.0.0.1:" + std::to_string(dead), ChannelOptions());
  TestCall* call = Unary("x");
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kUnavailable);
  EXPECT_NE(call->details().find("failed to connect to all addresses"), string::npos)
      << call->details();
}

TEST_F(Engine, ClosingTheChannelCancelsPendingAndActiveCalls) {
  TestCall* active = Unary("x", {{"x-hang", "1"}});
  ASSERT_TRUE(RunUntil(reactor.get(), [&] { return server->calls.size() == 1; }));
  TestCall* more = Unary("y");  // on the ready connection
  channel->Close();
  EXPECT_TRUE(active->done());
  EXPECT_TRUE(more->done());
  EXPECT_EQ(active->code(), kCancelled);
  EXPECT_EQ(active->details(), "Channel closed!");
  // A call on a closed channel ends at once.
  TestCall* late = Unary("z");
  EXPECT_TRUE(late->done());
  EXPECT_EQ(late->code(), kCancelled);
}

TEST_F(Engine, StopWithGraceLetsInFlightCallsFinish) {
  calls.push_back(std::make_unique<TestCall>(false));
  TestCall* call = calls.back().get();
  CallArgs args;
  args.path = "/test.Echo/Stream";
  channel->Start(call, args);
  ASSERT_TRUE(RunUntil(reactor.get(), [&] { return server->calls.size() == 1; }));
  server->server.Stop(5);
  EXPECT_FALSE(server->terminated);
  // New calls are refused; the one in flight finishes.
  TestCall* refused = Unary("late");
  ASSERT_TRUE(Finish(refused));
  EXPECT_EQ(refused->code(), kUnavailable);
  call->Write("a", 1);
  call->DoneWriting();
  ASSERT_TRUE(Finish(call));
  EXPECT_EQ(call->code(), kOk);
  ASSERT_TRUE(RunUntil(reactor.get(), [&] { return server->terminated; }));
}

TEST_F(Engine, AddPortRejectsPortsOutOfRange) {
  string err;
  EXPECT_EQ(server->server.AddPort("127.0.0.1:70000", &err), -1);
  EXPECT_NE(err.find("70000"), string::npos) << err;
  EXPECT_EQ(server->server.AddPort("127.0.0.1:-1", &err), -1);
  EXPECT_EQ(server->server.AddPort("127.0.0.1", &err), -1);
}

// ------------------------------------------------------ handshake deadline
//
// A port that accepts TCP and never says a word of HTTP/2 (a server bound
// but not started, a stuck proxy). Deadlines here are short; the bounds on
// how long things take are generous, for a busy machine.

class SilentPeer {
 public:
  SilentPeer() {
    std::vector<int> fds;
    port = OpenListeners("127.0.0.1:0", false, &fds, &err);
    if (port > 0) listen_fd = fds[0];
  }
  ~SilentPeer() {
    for (int fd : accepted) close(fd);
    if (listen_fd >= 0) close(listen_fd);
  }
  // Accepts whatever has connected (and never answers); returns the count.
  size_t Accept() {
    for (int fd; (fd = accept(listen_fd, nullptr, nullptr)) >= 0;) accepted.push_back(fd);
    return accepted.size();
  }
  string target() const { return "127.0.0.1:" + std::to_string(port); }

  int port = -1;
  int listen_fd = -1;
  string err;
  std::vector<int> accepted;
};

TEST_F(Engine, SilentServerFailsFastCallsAtTheHandshakeDeadline) {
  SilentPeer peer;
  ASSERT_GT(peer.port, 0) << peer.err;
  ChannelOptions opts;
  opts.min_connect_timeout = 0.2;
  opts.initial_backoff = 0.1;
  channel = std::make_unique<Channel>(reactor, peer.target(), opts);
  double start = MonotonicNow();
  TestCall* call = Unary("x", {}, -1);  // no deadline of its own
  ASSERT_TRUE(RunUntil(
      reactor.get(), [&] { return peer.Accept() > 0 && call->done(); }, 10));
  double took = MonotonicNow() - start;
  EXPECT_EQ(call->code(), kUnavailable);
  EXPECT_NE(call->details().find("failed to connect to all addresses"), string::npos);
  EXPECT_NE(call->details().find("connection attempt timed out before receiving SETTINGS frame"),
            string::npos)
      << call->details();
  EXPECT_GE(took, 0.1);
  EXPECT_EQ(peer.accepted.size(), 1u);
}

TEST_F(Engine, WaitForReadyCallsRetryPastTheHandshakeDeadline) {
  SilentPeer peer;
  ASSERT_GT(peer.port, 0) << peer.err;
  ChannelOptions opts;
  opts.min_connect_timeout = 0.1;
  opts.initial_backoff = 0.1;
  opts.max_backoff = 0.1;
  channel = std::make_unique<Channel>(reactor, peer.target(), opts);
  calls.push_back(std::make_unique<TestCall>(true));
  TestCall* call = calls.back().get();
  CallArgs args;
  args.path = "/test.Echo/Unary";
  args.message = "x";
  args.message_len = 1;
  args.has_message = true;
  args.wait_for_ready = true;
  channel->Start(call, args);
  // Attempts every 0.2 s or so; the call waits through them.
  ASSERT_TRUE(RunUntil(
      reactor.get(), [&] { return peer.Accept() >= 3 || call->done(); }, 20));
  EXPECT_FALSE(call->done()) << call->code() << " " << call->details();
  call->Cancel(kCancelled, "enough");
  EXPECT_EQ(call->code(), kCancelled);
}

TEST_F(Engine, ServerClosesAConnectionThatNeverSendsItsPreface) {
  ServerOptions sopts;
  sopts.handshake_timeout = 0.2;
  server = std::make_unique<EchoServer>(reactor, sopts);
  string err;
  int p = server->server.AddPort("127.0.0.1:0", &err);
  ASSERT_GT(p, 0) << err;
  server->server.Start();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(p));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rv = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ASSERT_TRUE(rv == 0 || errno == EINPROGRESS);
  string got;
  bool eof = false;
  double start = MonotonicNow();
  ASSERT_TRUE(RunUntil(
      reactor.get(),
      [&] {
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
        eof = n == 0 || (n < 0 && errno != EAGAIN);
        return eof;
      },
      10));
  close(fd);
  EXPECT_GE(MonotonicNow() - start, 0.1);
  // SETTINGS, then GOAWAY(INTERNAL_ERROR) saying why, as grpcio's server does.
  EXPECT_NE(got.find("Did not receive HTTP/2 settings before handshake timeout"), string::npos);
}

TEST_F(Engine, TheHandshakeTimerStopsAtSettings) {
  ServerOptions sopts;
  sopts.handshake_timeout = 0.1;
  server = std::make_unique<EchoServer>(reactor, sopts);
  string err;
  int p = server->server.AddPort("127.0.0.1:0", &err);
  ASSERT_GT(p, 0) << err;
  server->server.Start();
  ChannelOptions opts;
  opts.min_connect_timeout = 0.1;
  opts.initial_backoff = 0.1;
  channel = std::make_unique<Channel>(reactor, "127.0.0.1:" + std::to_string(p), opts);
  TestCall* hanging = Unary("x", {{"x-hang", "1"}}, -1);
  ASSERT_TRUE(RunUntil(reactor.get(), [&] { return server->calls.size() == 1; }));
  // Well past both deadlines, the connection still carries the call.
  RunUntil(
      reactor.get(), [] { return false; }, 0.5);
  EXPECT_FALSE(hanging->done()) << hanging->details();
  TestCall* next = Unary("y");
  ASSERT_TRUE(Finish(next));
  EXPECT_EQ(next->code(), kOk) << next->details();
  hanging->Cancel(kCancelled, "done");
}

// ------------------------------------------------------ allocation faults
//
// Every allocation of a call, one at a time, is made to fail with
// std::bad_alloc: the process must never abort, the call must end (or
// fail to start, where the bindings raise MemoryError), and the channel
// and server must serve the next call.

long g_fail_countdown = -1;  // the allocation that fails: when this reaches 0
bool g_failed = false;

}  // namespace
}  // namespace grpc_green

// The replacements pair malloc with free; the compiler cannot see that.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(size_t n) {
  using grpc_green::g_fail_countdown;
  if (g_fail_countdown >= 0 && g_fail_countdown-- == 0) {
    grpc_green::g_failed = true;
    throw std::bad_alloc();
  }
  if (void* p = malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }

namespace grpc_green {
namespace {

// Runs `scenario` with allocation number n failing, for n = 0, 1, ...
// until a run where no allocation failed. `scenario` starts a call and
// returns it (or nullptr if starting failed); the harness drives it to
// its end and checks the next call succeeds.
void ForEveryAllocation(const std::function<TestCall*(Reactor*, Channel*)>& scenario,
                        const char* name) {
  for (long n = 0;; ++n) {
    ReactorRef reactor = NewReactor();
    ASSERT_TRUE(reactor);
    auto server = std::make_unique<EchoServer>(reactor);
    string err;
    int port = server->server.AddPort("127.0.0.1:0", &err);
    ASSERT_GT(port, 0) << err;
    server->server.Start();
    auto channel =
        std::make_unique<Channel>(reactor, "127.0.0.1:" + std::to_string(port), ChannelOptions());
    g_failed = false;
    g_fail_countdown = n;
    TestCall* call = nullptr;
    try {
      call = scenario(reactor.get(), channel.get());
    } catch (const std::bad_alloc&) {
      call = nullptr;  // the bindings raise MemoryError
    }
    if (call) {
      bool ended = RunUntil(
          reactor.get(), [call] { return call->done(); }, 3);
      g_fail_countdown = -1;
      ASSERT_TRUE(ended) << name << ": allocation " << n << " failed and the call never ended";
      if (!g_failed) {
        EXPECT_EQ(call->code(), kOk) << name << ": " << call->details();
      }
      reactor->DeferDelete(call);
    }
    g_fail_countdown = -1;
    bool failed = g_failed;
    // The same channel and server serve the next call.
    std::string req = "next";
    auto next = std::make_unique<TestCall>(true);
    CallArgs args;
    args.path = "/test.Echo/Unary";
    args.timeout = 5;
    args.message = req.data();
    args.message_len = req.size();
    args.has_message = true;
    channel->Start(next.get(), args);
    ASSERT_TRUE(RunUntil(reactor.get(), [&] { return next->done(); }))
        << name << ": after allocation " << n << " failed, the next call never ended";
    EXPECT_EQ(next->code(), kOk) << name << ": after allocation " << n
                                 << " failed, the next call: " << next->details();
    reactor->DeferDelete(next.release());
    channel.reset();
    server.reset();
    RunUntil(
        reactor.get(), [] { return false; }, 0.002);
    if (!failed) {
      std::printf("[          ] %s: %ld allocations, each made to fail once\n", name, n);
      EXPECT_GT(n, 20) << name << ": suspiciously few allocations";
      return;
    }
  }
}

TEST(EngineAllocationFailures, UnaryCall) {
  ForEveryAllocation(
      [](Reactor*, Channel* channel) {
        static const string req = "request";
        Headers md = {{"x-key", "a value long enough to need the heap"}};
        auto call = std::make_unique<TestCall>(true);
        CallArgs args;
        args.path = "/test.Echo/Unary";
        args.timeout = 5;
        args.metadata = &md;
        args.message = req.data();
        args.message_len = req.size();
        args.has_message = true;
        channel->Start(call.get(), args);
        return call.release();
      },
      "unary");
}

TEST(EngineAllocationFailures, StreamingCall) {
  ForEveryAllocation(
      [](Reactor* reactor, Channel* channel) {
        auto call = std::make_unique<TestCall>(false);
        CallArgs args;
        args.path = "/test.Echo/Bidi";
        args.timeout = 5;
        channel->Start(call.get(), args);
        TestCall* c = call.release();
        try {
          for (int i = 0; i < 3 && !c->done(); ++i) {
            string m(100 * static_cast<size_t>(i + 1), 'm');
            c->Write(m.data(), m.size());
            RunUntil(
                reactor, [c, i] { return c->done() || c->Drain() > static_cast<size_t>(i); }, 3);
          }
          c->DoneWriting();
        } catch (const std::bad_alloc&) {
          c->Cancel(kCancelled, "");  // what dropping the call's Python object does
        }
        return c;
      },
      "streaming");
}

}  // namespace
}  // namespace grpc_green
