// GoogleTest suite for csrc/H2Session.{hpp,cpp}: a client and a server
// H2Session talking through std::string buffers, driven the way gRPC uses
// them (unary and streaming bodies, Trailers-Only responses, deferred data,
// resets, GOAWAY, connection loss, bad input, oversized messages).
#include "H2Session.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "grpc_codec.hpp"
#include "h2_test_support.hpp"

namespace grpc_green {
namespace {

using std::string;
using namespace h2test;  // RecStream, delegates, Pump, Scan, H2SessionPair

constexpr uint32_t kConnLost = 0xffffffffu;  // what TConnection passes on loss

// ------------------------------------------------------------- handshake

TEST_F(H2SessionPair, HandshakeSettlesWithNoStreams) {
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));
  EXPECT_EQ(wire.c2s.compare(0, kPrefaceLen, kPreface), 0);
  EXPECT_TRUE(Scan(wire.c2s, true).well_formed);
  EXPECT_TRUE(Scan(wire.s2c, false).well_formed);
  EXPECT_FALSE(client->WantsOutput());
  EXPECT_FALSE(server->WantsOutput());
  EXPECT_TRUE(client->WantsIo());  // still open for reading
  EXPECT_TRUE(server->WantsIo());
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_TRUE(client->error().empty());
  EXPECT_TRUE(server->error().empty());
}

// ------------------------------------------------------------- 1. unary

TEST_F(H2SessionPair, UnaryExchange) {
  const string request = "hello request \x01\x02\x00 bytes";
  RecStream* c = StartCall({string(request.data(), request.size())});
  EXPECT_EQ(client->stream_count(), 1u);
  ASSERT_TRUE(Pump(*client, *server));

  ASSERT_EQ(sd.streams.size(), 1u);
  RecStream* s = ServerStream(0);
  EXPECT_EQ(s->id(), c->id());
  EXPECT_EQ(s->session(), server.get());
  EXPECT_EQ(server->stream_count(), 1u);
  EXPECT_TRUE(s->headers_received);
  EXPECT_EQ(s->headers_calls, 1);
  EXPECT_EQ(ValueOr(s->headers, ":path"), "/pkg.Svc/Method");
  EXPECT_EQ(ValueOr(s->headers, ":method"), "POST");
  EXPECT_EQ(ValueOr(s->headers, ":scheme"), "http");
  EXPECT_EQ(ValueOr(s->headers, ":authority"), "localhost:50051");
  EXPECT_EQ(ValueOr(s->headers, "te"), "trailers");
  EXPECT_EQ(ValueOr(s->headers, "content-type"), "application/grpc");
  EXPECT_EQ(ValueOr(s->headers, "grpc-timeout"), "10S");
  EXPECT_EQ(s->http_status, 0);
  ASSERT_EQ(s->received.size(), 1u);
  EXPECT_EQ(s->received[0], request);
  EXPECT_TRUE(s->deframer.messages().empty());
  EXPECT_FALSE(s->deframer.has_partial());
  EXPECT_FALSE(s->deframer.failed());
  EXPECT_TRUE(s->remote_ended);
  EXPECT_EQ(s->remote_end_calls, 1);
  EXPECT_EQ(s->close_calls, 0);
  EXPECT_EQ((std::vector<string>{"headers", "messages", "remote_end"}), s->events);

  // Client so far: nothing back yet.
  EXPECT_FALSE(c->headers_received);
  EXPECT_EQ(c->total_hooks(), 0);

  const string response(300, 'r');
  RespondFull(s, {response}, "0", {{"x-custom-trailer", "trailer-value"}});
  ASSERT_TRUE(Pump(*client, *server));

  EXPECT_TRUE(c->headers_received);
  EXPECT_EQ(c->http_status, 200);
  EXPECT_EQ(Find(c->headers, ":status"), nullptr);  // parsed into http_status
  // A client keeps metadata and the status, not reserved headers nobody reads.
  EXPECT_EQ(Find(c->headers, "content-type"), nullptr);
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->received[0], response);
  EXPECT_TRUE(c->trailers_received);
  EXPECT_EQ(c->trailers_calls, 1);
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
  EXPECT_EQ(ValueOr(c->trailers, "x-custom-trailer"), "trailer-value");
  EXPECT_EQ(ValueOr(c->trailers, "x-custom-trailer"), "trailer-value");
  EXPECT_EQ(Find(c->headers, "grpc-status"), nullptr);
  EXPECT_TRUE(c->remote_ended);
  EXPECT_EQ((std::vector<string>{"headers", "messages", "trailers", "remote_end", "close"}),
            c->events);

  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(c->hooks_after_close, 0);
  EXPECT_EQ(s->hooks_after_close, 0);
  // Still attached during OnClose (last hook), detached right after.
  EXPECT_TRUE(c->attached_during_close);
  EXPECT_TRUE(s->attached_during_close);
  EXPECT_FALSE(c->attached());
  EXPECT_FALSE(s->attached());
  EXPECT_EQ(c->session(), nullptr);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_EQ(s->pending_send(), 0u);
  EXPECT_EQ(cd.new_stream_calls, 0);
  EXPECT_TRUE(client->ok());
  EXPECT_TRUE(server->ok());
}

// The same exchange with every Receive() fed one byte at a time: frames
// split anywhere must reassemble.
TEST_F(H2SessionPair, UnaryExchangeByteAtATime) {
  const string request(1000, 'q');
  RecStream* c = StartCall({request});
  sd.setup = [this](RecStream* s) {
    s->on_remote_end = [this](RecStream* st) { RespondFull(st, {"pong"}, "0"); };
  };
  ASSERT_TRUE(Pump(*client, *server, nullptr, /*chunk=*/1));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->received.size(), 1u);
  EXPECT_EQ(s->received[0], request);
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->received[0], "pong");
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// Zero-length messages are messages too (an empty protobuf).
TEST_F(H2SessionPair, EmptyMessagesBothWays) {
  RecStream* c = StartCall({""});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->received.size(), 1u);
  EXPECT_EQ(s->received[0], "");
  RespondFull(s, {""}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->received[0], "");
  EXPECT_EQ(c->close_code, 0u);
}

// ------------------------------------------------------------- 2. Trailers-Only

TEST_F(H2SessionPair, TrailersOnlyResponse) {
  RecStream* c = StartCall({"x"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  RespondTrailersOnly(*server, s, "12", "Method not found: pkg.Svc/Method");
  EXPECT_FALSE(s->body_started);
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));

  FrameStats down = Scan(wire.s2c, false);
  EXPECT_EQ(down.headers_frames, 1u);
  EXPECT_EQ(down.data_frames, 0u);

  EXPECT_TRUE(c->headers_received);
  EXPECT_EQ(c->http_status, 200);
  EXPECT_EQ(ValueOr(c->headers, "grpc-status"), "12");
  EXPECT_EQ(ValueOr(c->headers, "grpc-message"), "Method not found: pkg.Svc/Method");
  EXPECT_EQ(Find(c->headers, "content-type"), nullptr);  // reserved: not kept
  EXPECT_FALSE(c->trailers_received);
  EXPECT_EQ(c->trailers_calls, 0);
  EXPECT_TRUE(c->trailers.empty());
  EXPECT_TRUE(c->received.empty());
  EXPECT_EQ(c->messages_calls, 0);
  EXPECT_TRUE(c->remote_ended);
  EXPECT_EQ((std::vector<string>{"headers", "remote_end", "close"}), c->events);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// A 1xx informational block before the response is skipped: the response
// headers that follow are not mistaken for trailers.
TEST_F(H2SessionPair, InformationalHeadersAreSkipped) {
  RecStream* c = StartCall({"x"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(c->id(), 1);
  // HEADERS, END_HEADERS, stream 1: ":status: 100" as an HPACK literal
  // without indexing on static name index 8.
  const string informational(
      "\x00\x00\x05\x01\x04\x00\x00\x00\x01"
      "\x08\x03"
      "100",
      14);
  ASSERT_TRUE(client->Receive(reinterpret_cast<const uint8_t*>(informational.data()),
                              informational.size()));
  EXPECT_FALSE(c->headers_received);
  RespondTrailersOnly(*server, s, "12", "nope");
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_TRUE(c->headers_received);
  EXPECT_EQ(c->http_status, 200);
  EXPECT_EQ(ValueOr(c->headers, "grpc-status"), "12");
  EXPECT_FALSE(c->trailers_received);
  EXPECT_TRUE(c->trailers.empty());
  EXPECT_EQ(c->close_code, 0u);
}

// A non-gRPC HTTP status (what PyServer's RespondHttpError sends).
TEST_F(H2SessionPair, TrailersOnlyWithHttpErrorStatus) {
  RecStream* c = StartCall({"x"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  Headers h = {{":status", "415"}, {"content-type", "application/grpc"}, {"grpc-status", "13"}};
  auto nva = ToNv(h);
  ASSERT_TRUE(server->SubmitResponse(s, nva.data(), nva.size(), true));
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->http_status, 415);
  EXPECT_EQ(ValueOr(c->headers, "grpc-status"), "13");
  EXPECT_FALSE(c->trailers_received);
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, 0u);
}

// ------------------------------------------------------------- 3. many streams, big and small

TEST_F(H2SessionPair, HundredConcurrentStreams) {
  constexpr int kCalls = 100;
  // The server answers from inside OnRemoteEnd, echoing the request.
  sd.setup = [this](RecStream* s) {
    s->on_remote_end = [this](RecStream* st) {
      ASSERT_EQ(st->received.size(), 1u);
      RespondFull(st, {"resp:" + st->received[0] + ":" + ValueOr(st->headers, ":path")}, "0",
                  {{"x-id", std::to_string(st->id())}});
    };
  };
  for (int i = 0; i < kCalls; ++i)
    StartCall({"req" + std::to_string(i)}, true, "/pkg.Svc/M" + std::to_string(i));
  EXPECT_EQ(client->stream_count(), static_cast<size_t>(kCalls));

  ASSERT_TRUE(Pump(*client, *server));

  ASSERT_EQ(sd.streams.size(), static_cast<size_t>(kCalls));
  std::vector<int32_t> ids;
  for (int i = 0; i < kCalls; ++i) {
    RecStream* c = calls[i].get();
    SCOPED_TRACE("call " + std::to_string(i));
    ids.push_back(c->id());
    EXPECT_EQ(c->http_status, 200);
    ASSERT_EQ(c->received.size(), 1u);
    EXPECT_EQ(c->received[0], "resp:req" + std::to_string(i) + ":/pkg.Svc/M" + std::to_string(i));
    EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
    EXPECT_EQ(ValueOr(c->trailers, "x-id"), std::to_string(c->id_at_close));
    EXPECT_EQ(c->close_calls, 1);
    EXPECT_EQ(c->close_code, 0u);
    EXPECT_EQ(c->hooks_after_close, 0);
  }
  // Client stream ids: odd, increasing, distinct.
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(ids[i], 1 + 2 * i);
  for (auto& s : sd.streams) {
    EXPECT_EQ(s->close_calls, 1);
    EXPECT_EQ(s->close_code, 0u);
  }
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// Sends a message far larger than a DATA frame and than the flow-control
// window each way, and checks it arrives whole after WINDOW_UPDATEs flowed.
void BigMessageRoundTrip(std::unique_ptr<H2Session>& client, std::unique_ptr<H2Session>& server,
                         ServerDelegate& sd, std::vector<std::unique_ptr<RecStream>>& calls,
                         size_t window) {
  constexpr size_t kBig = 1 << 20;
  string big(kBig, '\0');
  std::mt19937 rng(1234);
  for (char& ch : big) ch = static_cast<char>(rng());
  string big_reply = big;
  std::reverse(big_reply.begin(), big_reply.end());

  calls.push_back(std::make_unique<RecStream>());
  RecStream* c = calls.back().get();
  AppendFramedMessage(c->sendbuf, big.data(), big.size());
  c->send_closed = true;
  Headers h = GrpcRequestHeaders();
  auto nva = ToNv(h);
  ASSERT_GT(client->SubmitRequest(c, nva.data(), nva.size()), 0);

  sd.setup = [&](RecStream* s) {
    s->on_remote_end = [&](RecStream* st) {
      Headers rh = GrpcResponseHeaders();
      auto rnva = ToNv(rh);
      ASSERT_TRUE(server->SubmitResponse(st, rnva.data(), rnva.size(), false));
      AppendFramedMessage(st->sendbuf, big_reply.data(), big_reply.size());
      st->send_trailers = {{"grpc-status", "0"}};
      st->has_trailers = true;
      st->send_closed = true;
      server->ResumeData(st);
    };
  };

  Wire wire;
  int rounds = 0;
  ASSERT_TRUE(Pump(*client, *server, &wire, 0, &rounds));
  sd.setup = nullptr;  // captures locals of this function

  ASSERT_EQ(sd.streams.size(), 1u);
  RecStream* s = sd.streams[0].get();
  ASSERT_EQ(s->received.size(), 1u);
  EXPECT_TRUE(s->received[0] == big) << "request corrupted";
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_TRUE(c->received[0] == big_reply) << "response corrupted";
  // Delivered in pieces: more than one OnMessages-free chunk, but one message.
  EXPECT_EQ(s->messages_calls, 1);
  EXPECT_EQ(c->messages_calls, 1);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");

  FrameStats up = Scan(wire.c2s, true);
  FrameStats down = Scan(wire.s2c, false);
  ASSERT_TRUE(up.well_formed);
  ASSERT_TRUE(down.well_formed);
  EXPECT_EQ(up.data_bytes, kBig + kFrameHeaderSize);
  EXPECT_EQ(down.data_bytes, kBig + kFrameHeaderSize);
  EXPECT_LE(up.max_data_len, 16384u);
  EXPECT_LE(down.max_data_len, 16384u);
  EXPECT_GE(up.data_frames, kBig / 16384);
  EXPECT_GE(down.data_frames, kBig / 16384);
  // The message exceeds the window: the receivers must have granted more.
  ASSERT_GT(kBig + kFrameHeaderSize, window);
  EXPECT_GT(down.window_updates, 0u) << "server never opened the client's window";
  EXPECT_GT(up.window_updates, 0u) << "client never opened the server's window";
  EXPECT_GT(rounds, 2);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

TEST_F(H2SessionPair, OneMiBMessageWithDefaultWindows) {
  // H2Settings defaults: 1 MiB stream window, less than 1 MiB + 5 bytes.
  BigMessageRoundTrip(client, server, sd, calls, H2Settings().initial_window_size);
}

TEST_F(H2SessionPair, OneMiBMessageWithProtocolDefaultWindows) {
  H2Settings small;
  small.initial_window_size = 65535;  // HTTP/2's default
  small.connection_window_size = 65535;
  Init(small, small);
  BigMessageRoundTrip(client, server, sd, calls, 65535);
}

TEST_F(H2SessionPair, SmallMessagesCoalesced) {
  std::vector<string> msgs;
  for (int i = 0; i < 200; ++i) msgs.push_back("m" + std::to_string(i) + string(i % 7, '.'));
  RecStream* c = StartCall(msgs);
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->received, msgs);
  // All 200 messages fit in one DATA frame: one chunk, one OnMessages.
  EXPECT_EQ(Scan(wire.c2s, true).data_frames, 1u);
  EXPECT_EQ(s->messages_calls, 1);

  // Response: many messages queued at once, plus one queued later.
  RespondFull(s, msgs, "0");
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->received, msgs);
  EXPECT_LT(c->messages_calls, 200);
  EXPECT_EQ(c->close_code, 0u);
}

// Messages straddling DATA frame boundaries (a 16 KiB frame holds parts
// of several messages).
TEST_F(H2SessionPair, MessagesStraddleFrames) {
  std::vector<string> msgs;
  std::mt19937 rng(99);
  for (int i = 0; i < 60; ++i)
    msgs.push_back(string(rng() % 9000, static_cast<char>('a' + i % 26)));
  RecStream* c = StartCall(msgs);
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->received, msgs);
  EXPECT_GT(Scan(wire.c2s, true).data_frames, 10u);
  RespondFull(s, msgs, "0");
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->received, msgs);
}

// SETTINGS_MAX_CONCURRENT_STREAMS: excess requests wait on the client side.
TEST_F(H2SessionPair, MaxConcurrentStreamsQueuesRequests) {
  H2Settings ss;
  ss.max_concurrent_streams = 4;
  Init(H2Settings(), ss);
  ASSERT_TRUE(Pump(*client, *server));  // the client learns the limit first
  sd.setup = [this](RecStream* s) {
    s->on_remote_end = [this](RecStream* st) { RespondFull(st, {st->received.at(0)}, "0"); };
  };
  for (int i = 0; i < 20; ++i) StartCall({"n" + std::to_string(i)});
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(sd.streams.size(), 20u);
  EXPECT_LE(sd.max_attached_seen, 4u);
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(calls[i]->received.size(), 1u);
    EXPECT_EQ(calls[i]->received[0], "n" + std::to_string(i));
    EXPECT_EQ(calls[i]->close_code, 0u);
  }
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// ------------------------------------------------------------- 4. deferred data

TEST_F(H2SessionPair, DeferredDataThenTrailers) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);

  // Headers now, no data yet: the data provider defers.
  Headers h = GrpcResponseHeaders();
  h.emplace_back("x-initial-md", "v");
  auto nva = ToNv(h);
  ASSERT_TRUE(server->SubmitResponse(s, nva.data(), nva.size(), false));
  EXPECT_TRUE(s->body_started);
  Wire wire1;
  ASSERT_TRUE(Pump(*client, *server, &wire1));
  EXPECT_TRUE(s->data_deferred);
  EXPECT_EQ(Scan(wire1.s2c, false).data_frames, 0u);
  EXPECT_TRUE(c->headers_received);
  EXPECT_EQ(c->http_status, 200);
  EXPECT_EQ(ValueOr(c->headers, "x-initial-md"), "v");
  EXPECT_TRUE(c->received.empty());
  EXPECT_FALSE(c->remote_ended);
  EXPECT_EQ(c->close_calls, 0);
  EXPECT_EQ(s->close_calls, 0);
  EXPECT_EQ(server->stream_count(), 1u);

  // Data later.
  AppendFramedMessage(s->sendbuf, "first", 5);
  server->ResumeData(s);
  EXPECT_FALSE(s->data_deferred);
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->received[0], "first");
  EXPECT_FALSE(c->remote_ended);
  EXPECT_FALSE(c->trailers_received);
  EXPECT_TRUE(s->data_deferred);  // drained, waiting again
  EXPECT_EQ(s->pending_send(), 0u);

  // More data and the trailers, after a second resume.
  AppendFramedMessage(s->sendbuf, "second", 6);
  s->send_trailers = {{"grpc-status", "0"}, {"grpc-message", ""}};
  s->has_trailers = true;
  s->send_closed = true;
  server->ResumeData(s);
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->received.size(), 2u);
  EXPECT_EQ(c->received[1], "second");
  EXPECT_TRUE(c->trailers_received);
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// Trailers alone after deferral (no data after the headers).
TEST_F(H2SessionPair, DeferredThenTrailersWithoutData) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  Headers h = GrpcResponseHeaders();
  auto nva = ToNv(h);
  ASSERT_TRUE(server->SubmitResponse(s, nva.data(), nva.size(), false));
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_TRUE(s->data_deferred);
  s->send_trailers = {{"grpc-status", "5"}};
  s->has_trailers = true;
  s->send_closed = true;
  server->ResumeData(s);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_TRUE(c->received.empty());
  EXPECT_TRUE(c->trailers_received);
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "5");
  EXPECT_EQ(c->close_code, 0u);
}

// ResumeData on a stream that is not deferred is a no-op.
TEST_F(H2SessionPair, ResumeDataWhenNotDeferredIsHarmless) {
  RecStream* c = StartCall({"req"});
  client->ResumeData(c);  // provider not yet called
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  server->ResumeData(s);  // no provider at all yet
  RespondFull(s, {"a"}, "0");
  server->ResumeData(s);
  ASSERT_TRUE(Pump(*client, *server));
  server->ResumeData(s);  // detached now
  client->ResumeData(c);
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->close_code, 0u);
}

// Client streaming: request headers first, messages later, half-close last.
TEST_F(H2SessionPair, ClientStreamingHalfCloseLater) {
  RecStream* c = StartCall({}, /*close=*/false);
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->headers_received);
  EXPECT_FALSE(s->remote_ended);
  EXPECT_TRUE(c->data_deferred);

  for (int i = 0; i < 3; ++i) {
    string m = "chunk" + std::to_string(i);
    AppendFramedMessage(c->sendbuf, m.data(), m.size());
    client->ResumeData(c);
    ASSERT_TRUE(Pump(*client, *server));
    ASSERT_EQ(s->received.size(), static_cast<size_t>(i + 1));
    EXPECT_EQ(s->received.back(), m);
    EXPECT_FALSE(s->remote_ended);
  }
  c->send_closed = true;
  client->ResumeData(c);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_TRUE(s->remote_ended);
  EXPECT_EQ(s->remote_end_calls, 1);
  EXPECT_EQ(s->close_calls, 0);

  RespondFull(s, {"sum"}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_code, 0u);
}

// ------------------------------------------------------------- 5. reset and abandon

TEST_F(H2SessionPair, ClientResetCancelsServerStream) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->close_calls, 0);

  client->Reset(c, NGHTTP2_CANCEL);
  EXPECT_TRUE(c->attached());  // detached only when nghttp2 closes it
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));
  FrameStats up = Scan(wire.c2s, true);
  ASSERT_EQ(up.rst_codes.size(), 1u);
  EXPECT_EQ(up.rst_codes[0], static_cast<uint32_t>(NGHTTP2_CANCEL));

  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_FALSE(c->attached());
  EXPECT_FALSE(s->attached());
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);

  // Reset on a detached stream does nothing.
  client->Reset(c, NGHTTP2_CANCEL);
  Wire wire2;
  ASSERT_TRUE(Pump(*client, *server, &wire2));
  EXPECT_EQ(Scan(wire2.c2s, true).rst_frames, 0u);
}

// The server cancels (PyServer's Cancel, deadline on the server side).
TEST_F(H2SessionPair, ServerResetReachesClient) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  server->Reset(s, NGHTTP2_CANCEL);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(c->headers_calls, 0);
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// Reset of a request whose HEADERS were never sent: the stream closes on
// the client and the server never hears of it.
TEST_F(H2SessionPair, ResetBeforeHeadersAreSent) {
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* c = StartCall({"req"});
  client->Reset(c, NGHTTP2_CANCEL);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_FALSE(c->attached());
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_TRUE(sd.ids.empty());
  EXPECT_EQ(server->stream_count(), 0u);
  // The connection is still usable.
  RecStream* c2 = StartCall({"again"});
  sd.setup = [this](RecStream* s) {
    s->on_remote_end = [this](RecStream* st) { RespondFull(st, {"ok"}, "0"); };
  };
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c2->received.size(), 1u);
  EXPECT_EQ(c2->close_code, 0u);
}

TEST_F(H2SessionPair, AbandonDetachesAtOnce) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);

  // The server's full response is already on the wire when the client
  // gives up: it must not reach the abandoned stream.
  RespondFull(s, {"late response"}, "0");
  string in_flight;
  ASSERT_TRUE(server->CollectOutput(in_flight));
  ASSERT_FALSE(in_flight.empty());

  client->Abandon(c, NGHTTP2_CANCEL);
  EXPECT_FALSE(c->attached());
  EXPECT_EQ(c->session(), nullptr);
  EXPECT_EQ(client->stream_count(), 0u);

  ASSERT_TRUE(Feed(*client, in_flight));
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));

  EXPECT_EQ(c->total_hooks(), 0);
  EXPECT_TRUE(c->events.empty());
  EXPECT_FALSE(c->headers_received);
  EXPECT_TRUE(c->headers.empty());
  EXPECT_TRUE(c->trailers.empty());
  EXPECT_TRUE(c->received.empty());
  EXPECT_TRUE(c->deframer.messages().empty());
  EXPECT_EQ(client->stream_count(), 0u);
  // The server finished its side before the reset arrived.
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_TRUE(client->ok());
  EXPECT_TRUE(server->ok());

  // Abandon again is a no-op.
  client->Abandon(c, NGHTTP2_CANCEL);
  EXPECT_EQ(client->stream_count(), 0u);
}

// The client abandons while the server's whole response is being sent:
// RST_STREAM and the response cross on the wire. The response reaches no
// client hook; the server had finished its side before the reset arrived.
TEST_F(H2SessionPair, AbandonCrossesServerReply) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  // The server answers in the same flight as the RST_STREAM crosses.
  client->Abandon(c, NGHTTP2_CANCEL);
  RespondFull(s, {"reply"}, "0");
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));
  FrameStats up = Scan(wire.c2s, true);
  ASSERT_EQ(up.rst_codes.size(), 1u);
  EXPECT_EQ(up.rst_codes[0], static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(c->total_hooks(), 0);
  EXPECT_TRUE(c->headers.empty());
  EXPECT_TRUE(c->received.empty());
  EXPECT_EQ(Scan(wire.s2c, false).headers_frames, 2u);  // response + trailers
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_TRUE(client->ok());
  EXPECT_TRUE(server->ok());
}

// Abandon before the server answered: the server sees CANCEL.
TEST_F(H2SessionPair, AbandonBeforeServerReplies) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  client->Abandon(c, NGHTTP2_CANCEL);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->total_hooks(), 0);
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_FALSE(s->attached());
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// Abandon of a request whose HEADERS are still queued (a deadline that
// expires before the first flush), then the stream object is freed: the
// session must not touch it again.
TEST_F(H2SessionPair, AbandonBeforeHeadersSentThenFree) {
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* c = StartCall({"req"});
  client->Abandon(c, NGHTTP2_CANCEL);
  EXPECT_FALSE(c->attached());
  EXPECT_EQ(client->stream_count(), 0u);
  calls.clear();  // frees it
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_TRUE(sd.ids.empty());
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_TRUE(client->ok());
}

// Same for requests held back by MAX_CONCURRENT_STREAMS.
TEST_F(H2SessionPair, AbandonQueuedRequestsThenFree) {
  H2Settings ss;
  ss.max_concurrent_streams = 2;
  Init(H2Settings(), ss);
  ASSERT_TRUE(Pump(*client, *server));
  for (int i = 0; i < 6; ++i) StartCall({"q" + std::to_string(i)});
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(sd.streams.size(), 2u);  // the others wait on the client
  ASSERT_EQ(client->stream_count(), 6u);
  for (int i = 2; i < 6; ++i) client->Abandon(calls[i].get(), NGHTTP2_CANCEL);
  EXPECT_EQ(client->stream_count(), 2u);
  for (int i = 2; i < 6; ++i) calls[i].reset();
  for (int i = 0; i < 2; ++i) RespondFull(ServerStream(i), {"a"}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(sd.streams.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(calls[i]->received.size(), 1u);
    EXPECT_EQ(calls[i]->close_code, 0u);
  }
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
  // The connection still takes new calls.
  RecStream* c = StartCall({"later"});
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(sd.streams.size(), 3u);
  RespondFull(ServerStream(2), {"b"}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->received.size(), 1u);
}

// Abandon while the request body is still being sent (deferred provider).
TEST_F(H2SessionPair, AbandonWhileSending) {
  RecStream* c = StartCall({"part"}, /*close=*/false);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_TRUE(c->data_deferred);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  AppendFramedMessage(c->sendbuf, "more", 4);
  client->Abandon(c, NGHTTP2_CANCEL);
  client->ResumeData(c);  // detached: ignored
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(c->total_hooks(), 0);
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// Abandon from inside a hook (what ClientCall::EndLocally does when the
// deframer fails): no further hook for that stream.
TEST_F(H2SessionPair, AbandonInsideHook) {
  RecStream* c = StartCall({"req"});
  c->on_headers = [this](RecStream* st) { client->Abandon(st, NGHTTP2_CANCEL); };
  sd.setup = [this](RecStream* s) {
    s->on_remote_end = [this](RecStream* st) { RespondFull(st, {"r1", "r2"}, "0"); };
  };
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ((std::vector<string>{"headers"}), c->events);
  EXPECT_TRUE(c->received.empty());
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// The server refuses a stream (Delegate::NewStream returns nullptr).
TEST_F(H2SessionPair, RefusedStream) {
  sd.refuse = true;
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(sd.ids.size(), 1u);
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_REFUSED_STREAM));
  EXPECT_EQ(c->headers_calls, 0);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_TRUE(client->ok());
  EXPECT_TRUE(server->ok());
}

// ------------------------------------------------------------- 6. GOAWAY

TEST_F(H2SessionPair, ServerGoawayReachesClient) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RespondFull(ServerStream(0), {"resp"}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->close_code, 0u);

  EXPECT_EQ(cd.goaway_calls, 0);
  server->Goaway(NGHTTP2_NO_ERROR);
  Wire wire;
  ASSERT_TRUE(Pump(*client, *server, &wire));
  FrameStats down = Scan(wire.s2c, false);
  EXPECT_EQ(down.goaway_frames, 1u);
  EXPECT_EQ(cd.goaway_calls, 1);
  EXPECT_EQ(cd.goaway_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(cd.goaway_last_id, 1);
  EXPECT_EQ(sd.goaway_calls, 0);
  // No streams and GOAWAY exchanged: both sides are done.
  EXPECT_FALSE(client->WantsIo());
  EXPECT_FALSE(server->WantsIo());
}

TEST_F(H2SessionPair, ClientGoawayReachesServer) {
  ASSERT_TRUE(Pump(*client, *server));
  client->Goaway(NGHTTP2_NO_ERROR);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(sd.goaway_calls, 1);
  EXPECT_EQ(sd.goaway_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(sd.goaway_last_id, 0);
  EXPECT_EQ(cd.goaway_calls, 0);
}

// Graceful shutdown: the stream in progress completes after GOAWAY; a
// request opened after GOAWAY is refused without reaching the server.
TEST_F(H2SessionPair, GoawayLetsInflightStreamFinish) {
  RecStream* c = StartCall({"req"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  server->Goaway(NGHTTP2_NO_ERROR);
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(cd.goaway_calls, 1);
  EXPECT_EQ(cd.goaway_last_id, c->id());
  EXPECT_TRUE(client->WantsIo());  // a stream is still open
  EXPECT_EQ(c->close_calls, 0);

  RecStream* late = StartCall({"too late"});
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(late->close_calls, 1);
  // REFUSED_STREAM: never processed, safe to retry (gRPC: UNAVAILABLE).
  EXPECT_EQ(late->close_code, static_cast<uint32_t>(NGHTTP2_REFUSED_STREAM));
  EXPECT_EQ(late->headers_calls, 0);
  EXPECT_EQ(sd.ids.size(), 1u);  // the server never saw it

  RespondFull(s, {"resp"}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
  EXPECT_FALSE(client->WantsIo());
  EXPECT_FALSE(server->WantsIo());
}

// ------------------------------------------------------------- 7. connection lost

TEST_F(H2SessionPair, CloseAllStreamsOnConnectionLoss) {
  for (int i = 0; i < 3; ++i) StartCall({"r" + std::to_string(i)}, i != 1);
  ASSERT_TRUE(Pump(*client, *server));
  ASSERT_EQ(sd.streams.size(), 3u);
  // One server stream is mid-response.
  RecStream* s0 = ServerStream(0);
  Headers h = GrpcResponseHeaders();
  auto nva = ToNv(h);
  ASSERT_TRUE(server->SubmitResponse(s0, nva.data(), nva.size(), false));
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(client->stream_count(), 3u);
  EXPECT_EQ(server->stream_count(), 3u);

  client->CloseAllStreams(kConnLost);
  for (auto& c : calls) {
    EXPECT_EQ(c->close_calls, 1);
    EXPECT_EQ(c->close_code, kConnLost);
    EXPECT_TRUE(c->attached_during_close);
    EXPECT_FALSE(c->attached());
  }
  EXPECT_EQ(client->stream_count(), 0u);

  server->CloseAllStreams(kConnLost);
  for (auto& s : sd.streams) {
    EXPECT_EQ(s->close_calls, 1);
    EXPECT_EQ(s->close_code, kConnLost);
    EXPECT_FALSE(s->attached());
  }
  EXPECT_EQ(server->stream_count(), 0u);

  // Calling it again has nothing to close.
  client->CloseAllStreams(kConnLost);
  server->CloseAllStreams(kConnLost);
  for (auto& c : calls) EXPECT_EQ(c->close_calls, 1);
  for (auto& s : sd.streams) EXPECT_EQ(s->close_calls, 1);
}

// After CloseAllStreams, bytes that were still in flight reach no hook.
TEST_F(H2SessionPair, CloseAllStreamsThenLateBytes) {
  RecStream* c = StartCall({"r"});
  ASSERT_TRUE(Pump(*client, *server));
  RespondFull(ServerStream(0), {"late"}, "0");
  string in_flight;
  ASSERT_TRUE(server->CollectOutput(in_flight));
  client->CloseAllStreams(kConnLost);
  EXPECT_EQ(c->close_calls, 1);
  ASSERT_TRUE(Feed(*client, in_flight));
  EXPECT_EQ(c->hooks_after_close, 0);
  EXPECT_EQ(c->total_hooks(), 1);
  EXPECT_TRUE(c->received.empty());
}

// A stream can be dropped from inside its OnClose by CloseAllStreams'
// caller's bookkeeping; here OnClose of one stream abandons another.
TEST_F(H2SessionPair, CloseAllStreamsToleratesDetachInHook) {
  RecStream* a = StartCall({"a"});
  RecStream* b = StartCall({"b"});
  ASSERT_TRUE(Pump(*client, *server));
  // Whichever closes first abandons the other.
  a->on_close = [this, b](RecStream*) { client->Abandon(b, NGHTTP2_CANCEL); };
  b->on_close = [this, a](RecStream*) { client->Abandon(a, NGHTTP2_CANCEL); };
  client->CloseAllStreams(kConnLost);
  EXPECT_EQ(a->close_calls + b->close_calls, 1);
  EXPECT_FALSE(a->attached());
  EXPECT_FALSE(b->attached());
  EXPECT_EQ(client->stream_count(), 0u);
}

// Destroying a session with attached streams detaches them silently.
TEST_F(H2SessionPair, DestructorDetachesWithoutHooks) {
  RecStream* c = StartCall({"r"});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  client.reset();
  server.reset();
  EXPECT_FALSE(c->attached());
  EXPECT_FALSE(s->attached());
  EXPECT_EQ(c->close_calls, 0);
  EXPECT_EQ(s->close_calls, 0);
}

// ------------------------------------------------------------- 8. bad input

TEST(H2SessionBadInput, RandomBytesInsteadOfPreface) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    ServerDelegate sd;
    H2Session server(H2Session::kServer, &sd, H2Settings());
    ASSERT_TRUE(server.ok());
    string junk(1 + rng() % 200, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    junk[0] = 'X';  // never a prefix of the preface
    EXPECT_FALSE(Feed(server, junk));
    EXPECT_FALSE(server.error().empty());
    EXPECT_FALSE(server.ok());
    // Once failed, it stays failed.
    EXPECT_FALSE(Feed(server, kPreface));
    EXPECT_TRUE(sd.ids.empty());
    string out;
    server.CollectOutput(out);  // must not crash
  }
}

TEST(H2SessionBadInput, Http1RequestInsteadOfPreface) {
  ServerDelegate sd;
  H2Session server(H2Session::kServer, &sd, H2Settings());
  EXPECT_FALSE(Feed(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_FALSE(server.error().empty());
}

TEST(H2SessionBadInput, PrefaceCorruptedHalfway) {
  ServerDelegate sd;
  H2Session server(H2Session::kServer, &sd, H2Settings());
  string p(kPreface, kPrefaceLen);
  EXPECT_TRUE(Feed(server, p.substr(0, 10)));  // fine so far
  string rest = p.substr(10);
  rest[3] ^= 0x20;
  EXPECT_FALSE(Feed(server, rest));
  EXPECT_FALSE(server.error().empty());
}

// A valid preface followed by garbage frames. Past the preface nghttp2
// does not fail Receive(): it queues GOAWAY(PROTOCOL_ERROR) and stops
// wanting IO (TConnection closes on !WantsIo()). Either way no stream is
// created and nothing crashes.
TEST(H2SessionBadInput, GarbageFramesAfterPreface) {
  std::mt19937 rng(11);
  const string empty_settings("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  int terminated[2] = {0, 0};
  for (int trial = 0; trial < 600; ++trial) {
    SCOPED_TRACE(trial);
    // Odd trials: a valid SETTINGS first, so the junk reaches the parsers
    // of every frame type (HPACK, WINDOW_UPDATE, ...).
    const int valid_settings = trial % 2;
    ServerDelegate sd;
    H2Session server(H2Session::kServer, &sd, H2Settings());
    string junk(1 + rng() % 300, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    string input = string(kPreface, kPrefaceLen) + (valid_settings ? empty_settings : "") + junk;
    bool ok = Feed(server, input);
    string out;
    ASSERT_TRUE(server.CollectOutput(out) || !ok);
    if (!ok) {
      EXPECT_FALSE(server.error().empty());
      continue;
    }
    FrameStats st = Scan(out, false);
    if (st.goaway_frames) {
      ++terminated[valid_settings];
      ASSERT_EQ(st.goaway_codes.size(), 1u);
      EXPECT_NE(st.goaway_codes[0], static_cast<uint32_t>(NGHTTP2_NO_ERROR));
      EXPECT_FALSE(server.WantsIo());
    } else {
      EXPECT_TRUE(server.WantsIo());  // an incomplete frame: waits for more
    }
    EXPECT_TRUE(sd.ids.empty());
  }
  EXPECT_GT(terminated[0], 250);  // 289 with this seed
  EXPECT_GT(terminated[1], 250);  // 296 with this seed
}

// A first frame that is not SETTINGS is a connection error.
TEST(H2SessionBadInput, FirstFrameNotSettings) {
  ServerDelegate sd;
  H2Session server(H2Session::kServer, &sd, H2Settings());
  // PING frame (type 6), 8 bytes of payload, right after the preface.
  string ping(
      "\x00\x00\x08\x06\x00\x00\x00\x00\x00"
      "12345678",
      17);
  // Receive() succeeds; the session terminates itself with
  // GOAWAY(PROTOCOL_ERROR) and wants no more IO.
  EXPECT_TRUE(Feed(server, string(kPreface, kPrefaceLen) + ping));
  string out;
  ASSERT_TRUE(server.CollectOutput(out));
  FrameStats st = Scan(out, false);
  EXPECT_EQ(st.goaway_frames, 1u);
  ASSERT_EQ(st.goaway_codes.size(), 1u);
  EXPECT_EQ(st.goaway_codes[0], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_FALSE(server.WantsIo());
  // Later input is refused, and the session says why it ended.
  EXPECT_FALSE(Feed(server, string(1000, '\x55')));
  EXPECT_FALSE(server.error().empty());
  EXPECT_TRUE(sd.ids.empty());
}

// The client fed garbage where the server's SETTINGS should be.
TEST(H2SessionBadInput, ClientGetsGarbage) {
  ClientDelegate cd;
  H2Session client(H2Session::kClient, &cd, H2Settings());
  string out;
  ASSERT_TRUE(client.CollectOutput(out));
  RecStream c;
  Headers h = GrpcRequestHeaders();
  auto nva = ToNv(h);
  ASSERT_GT(client.SubmitRequest(&c, nva.data(), nva.size()), 0);
  ASSERT_TRUE(client.CollectOutput(out));
  // Not a SETTINGS frame: GOAWAY(PROTOCOL_ERROR), no more IO wanted.
  EXPECT_TRUE(Feed(client, "HTTP/1.1 400 Bad Request\r\n\r\n"));
  string out2;
  ASSERT_TRUE(client.CollectOutput(out2));
  FrameStats st = Scan(out2, false);
  ASSERT_EQ(st.goaway_codes.size(), 1u);
  EXPECT_EQ(st.goaway_codes[0], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_FALSE(client.WantsIo());
  EXPECT_EQ(c.headers_calls, 0);
  client.CloseAllStreams(kConnLost);
  EXPECT_EQ(c.close_calls, 1);
  EXPECT_FALSE(c.attached());
}

// ------------------------------------------------------------- 9. oversize messages

// The server's deframer limit is below the request size: OnMessages fires
// once with the failure, and the server answers RESOURCE_EXHAUSTED from
// inside the hook the way PyServer does (Trailers-Only).
TEST_F(H2SessionPair, OversizeRequestFailsDeframer) {
  sd.max_recv = 1024;
  H2SessionPair* self = this;
  sd.setup = [self](RecStream* s) {
    s->on_messages = [self](RecStream* st) {
      if (st->deframer.failed())
        self->RespondTrailersOnly(*self->server, st, std::to_string(kResourceExhausted),
                                  "Received message larger than max");
    };
  };
  const string big(256 * 1024, 'B');  // spans many DATA frames
  RecStream* c = StartCall({big});
  ASSERT_TRUE(Pump(*client, *server));

  ASSERT_EQ(sd.streams.size(), 1u);
  RecStream* s = ServerStream(0);
  EXPECT_TRUE(s->deframer.failed());
  EXPECT_EQ(s->deframer.error_code(), kResourceExhausted);
  EXPECT_FALSE(s->deframer.error().empty());
  EXPECT_EQ(s->messages_calls, 1);  // not once per later DATA frame
  EXPECT_TRUE(s->received.empty());
  EXPECT_EQ(s->close_calls, 1);

  EXPECT_EQ(ValueOr(c->headers, "grpc-status"), std::to_string(kResourceExhausted));
  EXPECT_EQ(c->close_calls, 1);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

TEST_F(H2SessionPair, OversizeRequestJustOverLimit) {
  sd.max_recv = 100;
  RecStream* c = StartCall({string(101, 'x')});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->deframer.failed());
  EXPECT_EQ(s->deframer.error_code(), kResourceExhausted);
  EXPECT_EQ(s->messages_calls, 1);
  EXPECT_TRUE(s->received.empty());
  // A message exactly at the limit on a fresh stream is fine.
  RecStream* c2 = StartCall({string(100, 'y')});
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s2 = ServerStream(1);
  ASSERT_NE(s2, nullptr);
  EXPECT_FALSE(s2->deframer.failed());
  ASSERT_EQ(s2->received.size(), 1u);
  (void)c;
  (void)c2;
}

// The client's limit is below the response size: the client's deframer
// fails and the client abandons the call from the hook (ClientCall's
// EndLocally); no hook follows, the server's stream closes.
TEST_F(H2SessionPair, OversizeResponseFailsClientDeframer) {
  RecStream* c = StartCall({"req"}, true, "/pkg.Svc/Method", /*max_recv=*/4096);
  int failed_seen = 0;
  c->on_messages = [&](RecStream* st) {
    if (st->deframer.failed()) {
      ++failed_seen;
      client->Abandon(st, NGHTTP2_CANCEL);
    }
  };
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  RespondFull(s, {string(100000, 'Z')}, "0");
  ASSERT_TRUE(Pump(*client, *server));
  EXPECT_EQ(failed_seen, 1);
  EXPECT_EQ(c->messages_calls, 1);
  EXPECT_EQ(c->deframer.error_code(), kResourceExhausted);
  EXPECT_TRUE(c->received.empty());
  EXPECT_EQ(c->close_calls, 0);
  EXPECT_EQ((std::vector<string>{"headers", "messages"}), c->events);
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// A compressed-flag message (not negotiated) also fails the deframer.
TEST_F(H2SessionPair, CompressedFlagFailsDeframer) {
  calls.push_back(std::make_unique<RecStream>());
  RecStream* c = calls.back().get();
  c->sendbuf = string(
      "\x01\x00\x00\x00\x03"
      "abc",
      8);
  c->send_closed = true;
  Headers h = GrpcRequestHeaders();
  auto nva = ToNv(h);
  ASSERT_GT(client->SubmitRequest(c, nva.data(), nva.size()), 0);
  ASSERT_TRUE(Pump(*client, *server));
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->deframer.failed());
  EXPECT_NE(s->deframer.error_code(), kOk);
  EXPECT_EQ(s->messages_calls, 1);
  EXPECT_TRUE(s->received.empty());
}

}  // namespace
}  // namespace grpc_green
