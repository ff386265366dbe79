// GoogleTest suite for H2Session's HTTP/2 flow control and send-side
// bookkeeping:
//  - the connection window is given back as DATA arrives;
//  - a stream's window is given back only while its reader's backlog of
//    complete, unread messages is under H2Settings::max_buffered_per_stream,
//    after each DATA chunk and on H2Session::Consumed();
//  - the bytes of a message still being assembled are always given back,
//    so a message larger than the window still arrives;
//  - the sent prefix of sendbuf is dropped as the body goes out, and
//    H2Stream::OnSendProgress() fires for every piece that leaves sendbuf;
//  - a server that ends its response before the request ended follows it
//    with RST_STREAM(NO_ERROR).
//
// Amounts are read off the wire (DATA payload bytes and WINDOW_UPDATE
// increments per stream, see FrameStats in h2_test_support.hpp). The
// receiving nghttp2 session sends a WINDOW_UPDATE once the bytes given back
// reach half the window, so "granted" lags "given back" by less than W/2.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "H2Session.hpp"
#include "grpc_codec.hpp"
#include "h2_test_support.hpp"

namespace grpc_green {
namespace {

using std::string;
using namespace h2test;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kMaxFrame = 16384;  // H2Settings::max_frame_size default
// The connection window of a session that does not raise it (HTTP/2's).
constexpr size_t kProtocolConnWindow = 65535;

// Message `i` of a stream: `size` bytes that start with the index, so that
// loss, duplication and reordering all show.
string Msg(size_t i, size_t size) {
  string m = "#" + std::to_string(i) + ":";
  m.resize(size, static_cast<char>('a' + i % 26));
  return m.substr(0, size);
}

std::vector<string> Msgs(size_t n, size_t size) {
  std::vector<string> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(Msg(i, size));
  return v;
}

// Bytes the messages take on the wire (5-byte gRPC prefix each).
size_t FramedSize(const std::vector<string>& msgs) {
  size_t n = 0;
  for (auto& m : msgs) n += kFrameHeaderSize + m.size();
  return n;
}

// Upper bound on the DATA bytes a held reader lets in on one stream, from
// the moment its backlog is empty: the window W, plus what it gave back
// while its backlog of complete messages was under B (at most B bytes of
// messages, their prefixes, and the message being assembled).
size_t MaxDeliveredWhileHeld(size_t window, size_t backlog, size_t msg) {
  return window + backlog + msg + kFrameHeaderSize * (backlog / msg + 1);
}

// Lower bound for the same: the reader gave back at least everything up to
// the DATA frame that took its backlog to B (so at least B minus one frame),
// and at most W/2 of that was not granted yet.
size_t MinDeliveredWhileHeld(size_t window, size_t backlog) {
  size_t lo = window / 2 + backlog;
  return lo > kMaxFrame ? lo - kMaxFrame : 0;
}

class FlowControl : public H2SessionPair {
 public:
  // Pumps until quiet, then checks the sessions are healthy.
  void PumpInto(Wire& w) {
    ASSERT_TRUE(Pump(*client, *server, &w));
    ASSERT_TRUE(client->ok()) << client->error();
    ASSERT_TRUE(server->ok()) << server->error();
  }

  // Server side of a gRPC response whose messages are queued later.
  void RespondHeadersOnly(RecStream* s) {
    Headers h = GrpcResponseHeaders();
    auto nva = ToNv(h);
    ASSERT_TRUE(server->SubmitResponse(s, nva.data(), nva.size(), false));
  }
};

// ===================================================== 1, 2. held readers

struct HeldCase {
  bool server_sends;  // true: response to a held client; false: request
                      // to a held server stream
  uint32_t window;    // receiver's SETTINGS_INITIAL_WINDOW_SIZE
  size_t backlog;     // receiver's max_buffered_per_stream
  size_t msg;         // message size
};

void PrintTo(const HeldCase& p, std::ostream* os) {
  *os << (p.server_sends ? "server->client" : "client->server") << " W=" << p.window
      << " B=" << p.backlog << " M=" << p.msg;
}

class FlowControlHeld : public FlowControl, public ::testing::WithParamInterface<HeldCase> {};

// A reader that keeps every message queued stops granting window once its
// backlog reaches B: the sender stops after about W + B bytes with the rest
// still in its sendbuf. The reader then catches up round by round (take all
// queued messages, Consumed(), pump) and every message arrives, in order.
TEST_P(FlowControlHeld, ReaderBacklogStopsSenderThenResumes) {
  const HeldCase p = GetParam();
  H2Settings rs;  // the receiving side's settings
  rs.initial_window_size = p.window;
  rs.max_buffered_per_stream = p.backlog;
  if (p.server_sends) Init(rs, H2Settings());
  else Init(H2Settings(), rs);
  if (HasFatalFailure()) return;
  Wire hs;
  PumpInto(hs);  // SETTINGS both ways first: the sender knows W

  const size_t total_target = 4 * (p.window + p.backlog);
  const std::vector<string> msgs = Msgs(total_target / p.msg + 1, p.msg);
  const size_t total = FramedSize(msgs);

  RecStream* c = nullptr;
  RecStream* s = nullptr;
  if (p.server_sends) {
    c = StartCall({"req"});
    c->hold = true;
    PumpInto(hs);
    s = ServerStream(0);
    ASSERT_NE(s, nullptr);
    RespondFull(s, msgs, "0");
  } else {
    sd.setup = [](RecStream* st) { st->hold = true; };
    c = StartCall(msgs, /*close=*/true);
  }
  RecStream* sender = p.server_sends ? s : c;
  RecStream* reader_ptr = nullptr;
  auto reader = [&]() -> RecStream* {
    if (!reader_ptr) reader_ptr = p.server_sends ? c : ServerStream(0);
    return reader_ptr;
  };
  H2Session& reader_session = p.server_sends ? *client : *server;
  auto data_out = [&](const Wire& w) {  // sender -> reader DATA bytes
    return p.server_sends ? Scan(w.s2c, false).DataBytesOn(c->id())
                          : Scan(w.c2s, true).DataBytesOn(c->id());
  };
  auto granted = [&](const Wire& w) {  // reader -> sender stream window
    return p.server_sends ? Scan(w.c2s, true).WindowGrantedOn(c->id())
                          : Scan(w.s2c, false).WindowGrantedOn(c->id());
  };

  Wire w;
  PumpInto(w);
  ASSERT_NE(reader(), nullptr);
  RecStream* r = reader();

  // --- held: the sender is stopped by the stream window it was given.
  const size_t delivered = data_out(w);
  const uint64_t grant = granted(w);
  EXPECT_EQ(delivered, p.window + grant) << "the sender must use exactly the window it got";
  EXPECT_LE(delivered, MaxDeliveredWhileHeld(p.window, p.backlog, p.msg));
  EXPECT_GE(delivered, MinDeliveredWhileHeld(p.window, p.backlog));
  EXPECT_GE(delivered, static_cast<size_t>(p.window));
  ASSERT_LT(delivered, total) << "the test needs more data than the held reader takes";
  EXPECT_EQ(sender->pending_send(), total - delivered) << "the rest waits in sendbuf";
  EXPECT_GE(r->deframer.queued_bytes(), p.backlog);
  EXPECT_TRUE(r->received.empty());
  EXPECT_GT(r->unconsumed, 0u);
  EXPECT_LE(r->unconsumed, static_cast<size_t>(p.window));
  EXPECT_FALSE(r->remote_ended);
  // What is queued is the first messages, whole and in order.
  ASSERT_LE(r->deframer.messages().size(), msgs.size());
  for (size_t i = 0; i < r->deframer.messages().size(); ++i)
    ASSERT_EQ(r->deframer.messages()[i], msgs[i]) << "message " << i;

  // Still held: Consumed() gives nothing back, and nothing moves.
  EXPECT_FALSE(reader_session.Consumed(r));
  Wire idle;
  PumpInto(idle);
  EXPECT_EQ(data_out(idle), 0u);
  EXPECT_EQ(Scan(idle.c2s, true).window_updates + Scan(idle.s2c, false).window_updates, 0u);

  // --- release round by round.
  int rounds = 0;
  size_t received_bytes = delivered;
  uint64_t total_grant = grant;
  auto done = [&] { return p.server_sends ? c->close_calls > 0 : r->remote_ended; };
  while (!done()) {
    ASSERT_LT(++rounds, 10000) << "no progress";
    r->Drain();
    EXPECT_EQ(r->deframer.queued_bytes(), 0u);
    EXPECT_TRUE(reader_session.Consumed(r)) << "round " << rounds;
    EXPECT_EQ(r->unconsumed, 0u);
    Wire wr;
    PumpInto(wr);
    const size_t got = data_out(wr);
    ASSERT_GT(got, 0u) << "round " << rounds << ": the sender did not resume";
    EXPECT_LE(got, MaxDeliveredWhileHeld(p.window, p.backlog, p.msg)) << "round " << rounds;
    received_bytes += got;
    total_grant += granted(wr);
    if (sender->pending_send() > 0) {
      EXPECT_EQ(received_bytes, p.window + total_grant) << "round " << rounds;
      EXPECT_EQ(sender->pending_send(), total - received_bytes) << "round " << rounds;
    }
  }
  r->Drain();
  EXPECT_GT(rounds, 1);
  EXPECT_EQ(received_bytes, total);
  EXPECT_EQ(sender->pending_send(), 0u);
  ASSERT_EQ(r->received.size(), msgs.size());
  EXPECT_TRUE(r->received == msgs) << "messages lost, duplicated or reordered";

  if (p.server_sends) {
    EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
    EXPECT_EQ(c->close_code, 0u);
  } else {
    RespondFull(r, {"done"}, "0");
    PumpInto(w);
    ASSERT_EQ(c->received.size(), 1u);
    EXPECT_EQ(c->close_code, 0u);
    EXPECT_EQ(r->close_code, 0u);
  }
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Windows, FlowControlHeld,
    ::testing::Values(
        HeldCase{true, 64 * kKiB, 64 * kKiB, 1000}, HeldCase{false, 64 * kKiB, 64 * kKiB, 1000},
        HeldCase{true, 64 * kKiB, 256 * kKiB, 4000}, HeldCase{false, 64 * kKiB, 256 * kKiB, 4000},
        HeldCase{true, 256 * kKiB, 16 * kKiB, 100}, HeldCase{false, 256 * kKiB, 16 * kKiB, 100},
        HeldCase{true, 64 * kKiB, 16 * kKiB, 32 * kKiB},  // message > B
        HeldCase{false, 64 * kKiB, 16 * kKiB, 32 * kKiB},
        HeldCase{true, 1 << 20, 64 * kKiB, 16 * kKiB},  // H2Settings defaults
        HeldCase{false, 1 << 20, 64 * kKiB, 16 * kKiB}),
    [](const ::testing::TestParamInfo<HeldCase>& info) {
      const HeldCase& p = info.param;
      return string(p.server_sends ? "ServerToClient" : "ClientToServer") + "_W" +
             std::to_string(p.window / kKiB) + "K_B" + std::to_string(p.backlog / kKiB) + "K_M" +
             std::to_string(p.msg);
    });

// The limit is "fewer than B bytes queued": Consumed() gives the window back
// exactly when the reader's pops take the backlog below B, not before.
TEST_F(FlowControl, ConsumedGivesBackOnlyBelowBacklogLimit) {
  H2Settings cs;
  cs.initial_window_size = 64 * kKiB;
  cs.max_buffered_per_stream = 10000;
  Init(cs, H2Settings());
  Wire w;
  PumpInto(w);
  RecStream* c = StartCall({"req"});
  c->hold = true;
  PumpInto(w);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  RespondFull(s, Msgs(1000, 1000), "0");
  PumpInto(w);
  ASSERT_GE(c->deframer.queued_bytes(), 10000u);
  ASSERT_GT(c->unconsumed, 0u);
  // Pop one at a time: Consumed() refuses while 10000 or more bytes stay
  // queued, and gives back everything withheld at the first pop below.
  while (c->deframer.queued_bytes() - c->deframer.messages().front().size() >= 10000) {
    c->received.push_back(c->deframer.Pop());
    const size_t withheld = c->unconsumed;
    EXPECT_FALSE(client->Consumed(c)) << "queued " << c->deframer.queued_bytes();
    EXPECT_EQ(c->unconsumed, withheld);
  }
  ASSERT_EQ(c->deframer.queued_bytes() % 1000, 0u);
  c->received.push_back(c->deframer.Pop());
  EXPECT_EQ(c->deframer.queued_bytes(), 9000u);
  EXPECT_TRUE(client->Consumed(c));
  EXPECT_EQ(c->unconsumed, 0u);
  EXPECT_FALSE(client->Consumed(c)) << "nothing left to give back";
  Wire after;
  PumpInto(after);
  EXPECT_GT(Scan(after.c2s, true).WindowGrantedOn(c->id()), 0u);
  EXPECT_GT(Scan(after.s2c, false).DataBytesOn(c->id()), 0u);
  // Abandoned: Consumed() on a detached stream does nothing.
  client->Abandon(c, NGHTTP2_CANCEL);
  c->Drain();
  EXPECT_FALSE(client->Consumed(c));
  PumpInto(after);
}

// ===================================================== 3. streams independent

// A held stream's bytes still return the connection window at once, so a
// second stream on the same connection completes while the first is held.
// The receiver keeps HTTP/2's 64 KiB connection window; the held stream
// alone takes several times that.
TEST_F(FlowControl, HeldStreamDoesNotStallOtherStreamServerToClient) {
  H2Settings cs;
  cs.initial_window_size = 256 * kKiB;
  cs.connection_window_size = kProtocolConnWindow;
  cs.max_buffered_per_stream = 64 * kKiB;
  Init(cs, H2Settings());
  Wire w;
  PumpInto(w);
  RecStream* a = StartCall({"a"});
  a->hold = true;
  RecStream* b = StartCall({"b"});
  PumpInto(w);
  ASSERT_EQ(sd.streams.size(), 2u);
  const std::vector<string> msgs_a = Msgs(512, 4096);  // 2 MiB
  const std::vector<string> msgs_b = Msgs(256, 4096);  // 1 MiB
  RespondFull(ServerStream(0), msgs_a, "0");
  RespondFull(ServerStream(1), msgs_b, "0");
  Wire w2;
  PumpInto(w2);

  // b is done.
  EXPECT_TRUE(b->received == msgs_b);
  EXPECT_EQ(ValueOr(b->trailers, "grpc-status"), "0");
  EXPECT_EQ(b->close_calls, 1);
  EXPECT_EQ(b->close_code, 0u);
  // a is held by its own stream window only, and took far more than the
  // connection window.
  const FrameStats down = Scan(w2.s2c, false);
  const FrameStats up = Scan(w2.c2s, true);
  const size_t got_a = down.DataBytesOn(a->id());
  EXPECT_GT(got_a, 3 * kProtocolConnWindow);
  EXPECT_EQ(got_a, cs.initial_window_size + up.WindowGrantedOn(a->id()));
  EXPECT_EQ(ServerStream(0)->pending_send(), FramedSize(msgs_a) - got_a);
  EXPECT_EQ(a->close_calls, 0);
  EXPECT_TRUE(a->received.empty());
  EXPECT_GT(a->unconsumed, kProtocolConnWindow) << "the case needs a held backlog above the "
                                                   "connection window";
  // Every DATA byte, held or not, was given back to the connection: what
  // is not granted yet is under half the connection window.
  EXPECT_EQ(down.data_bytes, got_a + FramedSize(msgs_b));
  EXPECT_GE(up.WindowGrantedOn(0) + kProtocolConnWindow / 2, down.data_bytes);
  EXPECT_LE(down.data_bytes, kProtocolConnWindow + up.WindowGrantedOn(0));

  // a completes once read.
  for (int round = 0; a->close_calls == 0; ++round) {
    ASSERT_LT(round, 1000);
    a->Drain();
    client->Consumed(a);
    PumpInto(w2);
  }
  a->Drain();
  EXPECT_TRUE(a->received == msgs_a);
  EXPECT_EQ(a->close_code, 0u);
}

TEST_F(FlowControl, HeldStreamDoesNotStallOtherStreamClientToServer) {
  H2Settings ss;
  ss.initial_window_size = 256 * kKiB;
  ss.connection_window_size = kProtocolConnWindow;
  ss.max_buffered_per_stream = 64 * kKiB;
  Init(H2Settings(), ss);
  Wire w;
  PumpInto(w);
  bool first = true;
  sd.setup = [&first](RecStream* st) {
    st->hold = first;  // the first request's server stream is held
    first = false;
  };
  const std::vector<string> msgs_a = Msgs(512, 4096);
  const std::vector<string> msgs_b = Msgs(256, 4096);
  RecStream* a = StartCall(msgs_a);
  RecStream* b = StartCall(msgs_b);
  Wire w2;
  PumpInto(w2);
  ASSERT_EQ(sd.streams.size(), 2u);
  RecStream* sa = ServerStream(0);
  RecStream* sb = ServerStream(1);
  ASSERT_TRUE(sa->hold);
  ASSERT_FALSE(sb->hold);
  EXPECT_TRUE(sb->received == msgs_b);
  EXPECT_TRUE(sb->remote_ended);
  EXPECT_EQ(b->pending_send(), 0u);

  const FrameStats up = Scan(w2.c2s, true);
  const FrameStats down = Scan(w2.s2c, false);
  const size_t got_a = up.DataBytesOn(a->id());
  EXPECT_GT(got_a, 3 * kProtocolConnWindow);
  EXPECT_EQ(got_a, ss.initial_window_size + down.WindowGrantedOn(a->id()));
  EXPECT_EQ(a->pending_send(), FramedSize(msgs_a) - got_a);
  EXPECT_FALSE(sa->remote_ended);
  EXPECT_GE(down.WindowGrantedOn(0) + kProtocolConnWindow / 2, up.data_bytes);

  RespondFull(sb, {"b done"}, "0");
  PumpInto(w2);
  EXPECT_EQ(b->close_code, 0u);
  ASSERT_EQ(b->received.size(), 1u);

  for (int round = 0; !sa->remote_ended; ++round) {
    ASSERT_LT(round, 1000);
    sa->Drain();
    server->Consumed(sa);
    PumpInto(w2);
  }
  sa->Drain();
  EXPECT_TRUE(sa->received == msgs_a);
}

// A stream whose deframer failed (a message over the size limit) gets no
// more of its DATA looked at, but its bytes still return the connection
// window: while the server has not answered it yet, another stream on the
// connection goes on.
TEST_F(FlowControl, FailedDeframerStreamDoesNotStallConnection) {
  H2Settings ss;
  ss.initial_window_size = 512 * kKiB;
  ss.connection_window_size = kProtocolConnWindow;
  Init(H2Settings(), ss);
  Wire w;
  PumpInto(w);
  sd.max_recv = 1024;  // the first request's message is over this
  const string too_big(400 * kKiB, 'x');
  RecStream* a = StartCall({too_big}, /*close=*/false);
  Wire wa;
  PumpInto(wa);
  ASSERT_EQ(sd.streams.size(), 1u);
  RecStream* sa = ServerStream(0);
  EXPECT_TRUE(sa->deframer.failed());
  EXPECT_EQ(sa->messages_calls, 1);
  EXPECT_EQ(Scan(wa.c2s, true).DataBytesOn(a->id()), too_big.size() + kFrameHeaderSize)
      << "the whole message fits the stream window and must have been sent";
  EXPECT_EQ(a->pending_send(), 0u);
  EXPECT_GE(Scan(wa.s2c, false).WindowGrantedOn(0) + kProtocolConnWindow / 2,
            Scan(wa.c2s, true).data_bytes);

  sd.max_recv = 8 << 20;
  const std::vector<string> msgs = Msgs(64, 16 * kKiB);
  RecStream* b = StartCall(msgs);
  Wire wb;
  PumpInto(wb);
  ASSERT_EQ(sd.streams.size(), 2u);
  EXPECT_TRUE(ServerStream(1)->received == msgs);
  EXPECT_TRUE(ServerStream(1)->remote_ended);
  EXPECT_EQ(b->pending_send(), 0u);

  // The server fails the first call; the request had not ended.
  RespondTrailersOnly(*server, sa, std::to_string(kResourceExhausted), "too large");
  Wire wc;
  PumpInto(wc);
  EXPECT_EQ(ValueOr(a->headers, "grpc-status"), std::to_string(kResourceExhausted));
  EXPECT_EQ(a->close_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(Scan(wc.s2c, false).rst_codes, std::vector<uint32_t>{NGHTTP2_NO_ERROR});
}

// ===================================================== 4. big messages

// A message larger than the stream window arrives even though the reader
// takes nothing: bytes of a message still being assembled are given back.
// `backlog_before`: payload bytes of small messages queued (unread) ahead
// of the big one, all below the limit B.
void BigMessageToHeldReader(FlowControl& t, bool server_sends, size_t backlog_before) {
  H2Settings rs;
  rs.initial_window_size = 64 * kKiB;
  rs.max_buffered_per_stream = 64 * kKiB;
  if (server_sends) t.Init(rs, H2Settings());
  else t.Init(H2Settings(), rs);
  Wire w;
  t.PumpInto(w);

  std::vector<string> msgs;
  for (size_t i = 0; i < backlog_before / 1000; ++i) msgs.push_back(Msg(i, 1000));
  if (backlog_before % 1000) msgs.push_back(Msg(msgs.size(), backlog_before % 1000));
  const string big = Msg(7, 1 << 20);
  msgs.push_back(big);

  RecStream* c = nullptr;
  RecStream* r = nullptr;
  if (server_sends) {
    c = t.StartCall({"req"});
    c->hold = true;
    t.PumpInto(w);
    ASSERT_NE(t.ServerStream(0), nullptr);
    t.RespondFull(t.ServerStream(0), msgs, "0");
    r = c;
  } else {
    t.sd.setup = [](RecStream* st) { st->hold = true; };
    c = t.StartCall(msgs, /*close=*/true);
  }
  Wire w2;
  t.PumpInto(w2);
  if (!r) r = t.ServerStream(0);
  ASSERT_NE(r, nullptr);

  EXPECT_TRUE(r->received.empty()) << "the reader never took a message";
  ASSERT_EQ(r->deframer.messages().size(), msgs.size()) << "the big message did not complete";
  EXPECT_TRUE(r->deframer.messages().back() == big);
  EXPECT_FALSE(r->deframer.has_partial());
  EXPECT_TRUE(r->remote_ended);
  const size_t sent = server_sends ? Scan(w2.s2c, false).DataBytesOn(c->id())
                                   : Scan(w2.c2s, true).DataBytesOn(c->id());
  EXPECT_EQ(sent, FramedSize(msgs));
  EXPECT_GT(sent, 10 * rs.initial_window_size);

  r->Drain();
  EXPECT_TRUE(r->received == msgs);
  if (server_sends) {
    EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
    EXPECT_EQ(c->close_code, 0u);
  }
}

TEST_F(FlowControl, MessageLargerThanWindowReachesHeldClient) {
  BigMessageToHeldReader(*this, true, 0);
}

TEST_F(FlowControl, MessageLargerThanWindowReachesHeldServer) {
  BigMessageToHeldReader(*this, false, 0);
}

// Queued small messages just under the limit do not stop the big one.
TEST_F(FlowControl, MessageLargerThanWindowAfterBacklogJustUnderLimit) {
  BigMessageToHeldReader(*this, true, 64 * kKiB - 1);
}

// At the limit, the reader's backlog stops the stream: the big message
// stays incomplete until the reader takes the queued ones, then arrives.
TEST_F(FlowControl, BacklogAtLimitStopsBigMessageUntilRead) {
  H2Settings cs;
  cs.initial_window_size = 64 * kKiB;
  cs.max_buffered_per_stream = 64 * kKiB;
  Init(cs, H2Settings());
  Wire w;
  PumpInto(w);
  RecStream* c = StartCall({"req"});
  c->hold = true;
  PumpInto(w);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  std::vector<string> msgs = Msgs(16, 4 * kKiB);  // exactly B bytes of payload
  const string big = Msg(99, 1 << 20);
  msgs.push_back(big);
  RespondFull(s, msgs, "0");
  Wire w2;
  PumpInto(w2);
  EXPECT_EQ(c->deframer.messages().size(), 16u);
  EXPECT_EQ(c->deframer.queued_bytes(), 64 * kKiB);
  EXPECT_TRUE(c->deframer.has_partial());
  const size_t got = Scan(w2.s2c, false).DataBytesOn(c->id());
  EXPECT_EQ(got, cs.initial_window_size + Scan(w2.c2s, true).WindowGrantedOn(c->id()));
  EXPECT_LE(got, MaxDeliveredWhileHeld(cs.initial_window_size, 64 * kKiB, 4 * kKiB));
  EXPECT_GT(s->pending_send(), 0u);
  EXPECT_EQ(c->close_calls, 0);

  // Taking the queued messages lets the big one through, unread again.
  c->Drain();
  EXPECT_TRUE(client->Consumed(c));
  PumpInto(w2);
  ASSERT_EQ(c->deframer.messages().size(), 1u);
  EXPECT_TRUE(c->deframer.messages().front() == big);
  EXPECT_EQ(c->close_code, 0u);
  c->Drain();
  EXPECT_TRUE(c->received == msgs);
}

// ===================================================== 5. send side

// Tops up a stream's sendbuf from OnSendProgress, as a writer parked on a
// full buffer does when it is woken, and watches sendbuf's size.
struct ToppedUpWriter {
  size_t level;  // keep at least this many bytes pending
  size_t msg_size;
  size_t total_msgs;  // messages to write in all
  size_t written = 0;
  size_t max_size = 0;  // sendbuf.size() after each top-up
  size_t max_capacity = 0;
  size_t compactions = 0;  // hooks that found the sent prefix dropped
  size_t missed_compactions = 0;

  void TopUp(RecStream* st) {
    while (st->pending_send() < level && written < total_msgs) {
      string m = Msg(written++, msg_size);
      AppendFramedMessage(st->sendbuf, m.data(), m.size());
    }
    max_size = std::max(max_size, st->sendbuf.size());
    max_capacity = std::max(max_capacity, st->sendbuf.capacity());
  }
  // Called from OnSendProgress, before topping up: the sent prefix must
  // have been dropped once it reached 64 KiB and the larger half.
  void Observe(RecStream* st) {
    if (st->send_off == 0 && !st->sendbuf.empty()) ++compactions;
    if (st->send_off >= 64 * kKiB && st->send_off * 2 >= st->sendbuf.size()) ++missed_compactions;
  }
};

TEST_F(FlowControl, ToppedUpSendbufStaysBoundedBothWays) {
  Wire w;
  PumpInto(w);
  RecStream* c = StartCall({}, /*close=*/false);
  PumpInto(w);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  RespondHeadersOnly(s);

  constexpr size_t kLevel = 128 * kKiB;
  constexpr size_t kMsg = 8 * kKiB;
  constexpr size_t kMsgs = 1024;  // 8 MiB each way
  ToppedUpWriter up{kLevel, kMsg, kMsgs};
  ToppedUpWriter down{kLevel, kMsg, kMsgs};
  c->on_send_progress = [&up](RecStream* st) {
    up.Observe(st);
    up.TopUp(st);
  };
  s->on_send_progress = [&down](RecStream* st) {
    down.Observe(st);
    down.TopUp(st);
  };
  up.TopUp(c);
  down.TopUp(s);
  client->ResumeData(c);
  server->ResumeData(s);
  Wire w2;
  PumpInto(w2);

  // Everything went through, written only from the hook after the start.
  EXPECT_EQ(up.written, kMsgs);
  EXPECT_EQ(down.written, kMsgs);
  EXPECT_EQ(c->pending_send(), 0u);
  EXPECT_EQ(s->pending_send(), 0u);
  ASSERT_EQ(s->received.size(), kMsgs);
  ASSERT_EQ(c->received.size(), kMsgs);
  for (size_t i = 0; i < kMsgs; ++i) {
    ASSERT_EQ(s->received[i], Msg(i, kMsg)) << i;
    ASSERT_EQ(c->received[i], Msg(i, kMsg)) << i;
  }
  // sendbuf never held much more than twice the writer's level: the sent
  // prefix was dropped again and again instead of growing to 8 MiB.
  for (ToppedUpWriter* wr : {&up, &down}) {
    EXPECT_LE(wr->max_size, 2 * (kLevel + kMsg));
    EXPECT_LE(wr->max_capacity, 1 * kMiB);
    EXPECT_EQ(wr->missed_compactions, 0u);
    EXPECT_GE(wr->compactions, kMsgs * kMsg / (2 * (kLevel + kMsg)));
  }
  // OnSendProgress fired once per DATA frame that carried bytes.
  const FrameStats fu = Scan(w2.c2s, true);
  const FrameStats fd = Scan(w2.s2c, false);
  EXPECT_EQ(fu.DataBytesOn(c->id()), kMsgs * (kMsg + kFrameHeaderSize));
  EXPECT_EQ(fd.DataBytesOn(c->id()), kMsgs * (kMsg + kFrameHeaderSize));
  EXPECT_EQ(static_cast<size_t>(c->send_progress_calls), fu.NonEmptyDataFramesOn(c->id()));
  EXPECT_EQ(static_cast<size_t>(s->send_progress_calls), fd.NonEmptyDataFramesOn(c->id()));
  EXPECT_GE(static_cast<size_t>(c->send_progress_calls), kMsgs * kMsg / kMaxFrame);

  // Close both ways.
  c->send_closed = true;
  client->ResumeData(c);
  s->send_trailers = {{"grpc-status", "0"}};
  s->has_trailers = true;
  s->send_closed = true;
  server->ResumeData(s);
  PumpInto(w2);
  EXPECT_EQ(c->close_code, 0u);
  EXPECT_EQ(s->close_code, 0u);
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "0");
}

// OnSendProgress fires only when bytes leave sendbuf: not for headers, not
// while the stream window is shut, and again once the window reopens.
TEST_F(FlowControl, SendProgressOnlyWhenBytesLeave) {
  H2Settings cs;
  cs.initial_window_size = 64 * kKiB;
  cs.max_buffered_per_stream = 16 * kKiB;
  Init(cs, H2Settings());
  Wire w;
  PumpInto(w);
  RecStream* c = StartCall({"req"});
  c->hold = true;
  PumpInto(w);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->send_progress_calls, 0);
  RespondHeadersOnly(s);
  PumpInto(w);
  EXPECT_EQ(s->send_progress_calls, 0) << "headers alone are no send progress";
  const std::vector<string> msgs = Msgs(100, 4 * kKiB);
  for (auto& m : msgs) AppendFramedMessage(s->sendbuf, m.data(), m.size());
  server->ResumeData(s);
  Wire w2;
  PumpInto(w2);
  const int calls_held = s->send_progress_calls;
  EXPECT_EQ(static_cast<size_t>(calls_held), Scan(w2.s2c, false).NonEmptyDataFramesOn(c->id()));
  EXPECT_GT(calls_held, 0);
  ASSERT_GT(s->pending_send(), 0u);
  Wire idle;
  PumpInto(idle);
  EXPECT_EQ(s->send_progress_calls, calls_held) << "window shut: nothing left sendbuf";
  c->Drain();
  ASSERT_TRUE(client->Consumed(c));
  Wire w3;
  PumpInto(w3);
  EXPECT_GT(s->send_progress_calls, calls_held);
  EXPECT_EQ(static_cast<size_t>(s->send_progress_calls - calls_held),
            Scan(w3.s2c, false).NonEmptyDataFramesOn(c->id()));
}

// ===================================================== 6. early status

// The server answers (status trailers with END_STREAM) while the request
// is still open: RST_STREAM(NO_ERROR) follows the trailers on the wire, and
// the client keeps the status and closes with NO_ERROR.
TEST_F(FlowControl, EarlyStatusIsFollowedByRstNoError) {
  RecStream* c = StartCall({"req"}, /*close=*/false);
  Wire w;
  PumpInto(w);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  ASSERT_FALSE(s->remote_ended);
  RespondFull(s, {"resp"}, "3", {{"grpc-message", "bad request"}, {"x-trailer", "t"}});
  Wire w2;
  PumpInto(w2);

  const FrameStats down = Scan(w2.s2c, false);
  ASSERT_EQ(down.rst_frames, 1u);
  std::vector<FrameInfo> on_stream;
  for (auto& f : down.frames)
    if (f.stream_id == c->id()) on_stream.push_back(f);
  ASSERT_GE(on_stream.size(), 4u);  // HEADERS, DATA..., HEADERS(END_STREAM), RST
  const FrameInfo& last = on_stream.back();
  const FrameInfo& before = on_stream[on_stream.size() - 2];
  EXPECT_EQ(last.type, NGHTTP2_RST_STREAM);
  EXPECT_EQ(last.value, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(before.type, NGHTTP2_HEADERS);
  EXPECT_TRUE(before.flags & NGHTTP2_FLAG_END_STREAM) << "RST must come after the trailers";
  EXPECT_EQ(on_stream.front().type, NGHTTP2_HEADERS);
  EXPECT_FALSE(on_stream.front().flags & NGHTTP2_FLAG_END_STREAM);
  EXPECT_EQ(Scan(w2.c2s, true).rst_frames, 0u) << "the client does not reset back";

  EXPECT_TRUE(c->trailers_received);
  EXPECT_EQ(ValueOr(c->trailers, "grpc-status"), "3");
  EXPECT_EQ(ValueOr(c->trailers, "grpc-message"), "bad request");
  EXPECT_EQ(ValueOr(c->trailers, "x-trailer"), "t");
  ASSERT_EQ(c->received.size(), 1u);
  EXPECT_EQ(c->received[0], "resp");
  EXPECT_EQ((std::vector<string>{"headers", "messages", "trailers", "remote_end", "close"}),
            c->events);
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(s->close_calls, 1);
  EXPECT_EQ(s->close_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);

  // The rest of the request goes nowhere.
  AppendFramedMessage(c->sendbuf, "late", 4);
  c->send_closed = true;
  client->ResumeData(c);
  Wire w3;
  PumpInto(w3);
  EXPECT_EQ(Scan(w3.c2s, true).data_frames, 0u);
  EXPECT_EQ(sd.streams.size(), 1u);
}

TEST_F(FlowControl, EarlyTrailersOnlyIsFollowedByRstNoError) {
  RecStream* c = StartCall({}, /*close=*/false);
  Wire w;
  PumpInto(w);
  RecStream* s = ServerStream(0);
  ASSERT_NE(s, nullptr);
  RespondTrailersOnly(*server, s, "12", "no such method");
  Wire w2;
  PumpInto(w2);
  const FrameStats down = Scan(w2.s2c, false);
  ASSERT_EQ(down.frames.size(), 2u);
  EXPECT_EQ(down.frames[0].type, NGHTTP2_HEADERS);
  EXPECT_TRUE(down.frames[0].flags & NGHTTP2_FLAG_END_STREAM);
  EXPECT_EQ(down.frames[1].type, NGHTTP2_RST_STREAM);
  EXPECT_EQ(down.frames[1].stream_id, c->id());
  EXPECT_EQ(down.frames[1].value, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(ValueOr(c->headers, "grpc-status"), "12");
  EXPECT_EQ(ValueOr(c->headers, "grpc-message"), "no such method");
  EXPECT_FALSE(c->trailers_received);
  EXPECT_EQ((std::vector<string>{"headers", "remote_end", "close"}), c->events);
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(s->close_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
}

// A request that had ended gets no RST_STREAM, with either response form.
TEST_F(FlowControl, NoRstAfterStatusWhenRequestEnded) {
  RecStream* c1 = StartCall({"req"}, /*close=*/true);
  RecStream* c2 = StartCall({"req"}, /*close=*/true);
  Wire w;
  PumpInto(w);
  ASSERT_EQ(sd.streams.size(), 2u);
  ASSERT_TRUE(ServerStream(0)->remote_ended);
  ASSERT_TRUE(ServerStream(1)->remote_ended);
  RespondFull(ServerStream(0), {"resp"}, "0");
  RespondTrailersOnly(*server, ServerStream(1), "5", "not found");
  Wire w2;
  PumpInto(w2);
  EXPECT_EQ(Scan(w2.s2c, false).rst_frames, 0u);
  EXPECT_EQ(Scan(w2.c2s, true).rst_frames, 0u);
  EXPECT_EQ(ValueOr(c1->trailers, "grpc-status"), "0");
  EXPECT_EQ(ValueOr(c2->headers, "grpc-status"), "5");
  EXPECT_EQ(c1->close_code, 0u);
  EXPECT_EQ(c2->close_code, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// The usual case for an early status: the server fails the call from its
// first message while the client is still uploading. The client stops
// sending, keeps the status, and the server ignores DATA already in flight.
TEST_F(FlowControl, EarlyStatusStopsUploadInProgress) {
  H2Settings ss;
  ss.initial_window_size = 64 * kKiB;
  Init(H2Settings(), ss);
  Wire w;
  PumpInto(w);
  H2SessionPair* self = this;
  sd.setup = [self](RecStream* st) {
    st->on_messages = [self](RecStream* x) {
      if (x->messages_calls == 1) self->RespondTrailersOnly(*self->server, x, "3", "rejected");
    };
  };
  const std::vector<string> msgs = Msgs(256, 4096);  // 1 MiB
  RecStream* c = StartCall(msgs, /*close=*/false);
  Wire w2;
  PumpInto(w2);
  const FrameStats up = Scan(w2.c2s, true);
  const FrameStats down = Scan(w2.s2c, false);
  EXPECT_LT(up.DataBytesOn(c->id()), FramedSize(msgs) / 4) << "the client kept uploading";
  EXPECT_GT(c->pending_send(), 0u);
  ASSERT_EQ(down.rst_codes.size(), 1u);
  EXPECT_EQ(down.rst_codes[0], static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(up.rst_frames, 0u);
  EXPECT_EQ(ValueOr(c->headers, "grpc-status"), "3");
  EXPECT_EQ(ValueOr(c->headers, "grpc-message"), "rejected");
  EXPECT_EQ(c->close_code, static_cast<uint32_t>(NGHTTP2_NO_ERROR));
  EXPECT_EQ(up.goaway_frames + down.goaway_frames, 0u);
  EXPECT_EQ(client->stream_count(), 0u);
  EXPECT_EQ(server->stream_count(), 0u);
}

// ===================================================== 7. reset of held streams

// Resets and abandons of held streams with bytes not given back to the
// stream window, some with DATA still in flight to them, leave the
// connection window whole: a later stream moves many times the 64 KiB
// connection window.
TEST_F(FlowControl, ResetHeldStreamsDoNotLeakConnectionWindow) {
  H2Settings cs;
  cs.initial_window_size = 256 * kKiB;
  cs.connection_window_size = kProtocolConnWindow;
  cs.max_buffered_per_stream = 16 * kKiB;
  Init(cs, H2Settings());
  Wire all;
  PumpInto(all);

  enum Mode { kAbandonInFlight, kResetInFlight, kAbandonQuiet, kResetQuiet };
  for (Mode mode : {kAbandonInFlight, kResetInFlight, kAbandonQuiet, kResetQuiet, kAbandonInFlight,
                    kResetInFlight}) {
    SCOPED_TRACE(mode);
    RecStream* a = StartCall({"a"});
    a->hold = true;
    PumpInto(all);
    RecStream* sa = sd.streams.back().get();
    ASSERT_EQ(sa->id(), a->id());
    RespondFull(sa, Msgs(512, 4096), "0");
    const size_t before = Scan(all.s2c, false).DataBytesOn(a->id());
    PumpInto(all);
    ASSERT_GE(Scan(all.s2c, false).DataBytesOn(a->id()) - before, cs.initial_window_size)
        << "the held stream did not get its stream window: held or reset bytes kept the "
           "connection window";
    ASSERT_EQ(a->close_calls, 0);
    ASSERT_GT(a->unconsumed, 0u) << "held with window not given back";

    const bool in_flight = mode == kAbandonInFlight || mode == kResetInFlight;
    const bool abandon = mode == kAbandonInFlight || mode == kAbandonQuiet;
    string s2c;
    if (in_flight) {
      // The reader catches up once; the sender answers with more DATA,
      // which reaches the client only after it gave up on the stream.
      a->Drain();
      ASSERT_TRUE(client->Consumed(a));
      string c2s;
      ASSERT_TRUE(client->CollectOutput(c2s));
      all.c2s += c2s;
      ASSERT_TRUE(Feed(*server, c2s));
      ASSERT_TRUE(server->CollectOutput(s2c));
      all.s2c += s2c;
      ASSERT_GT(Scan(s2c, false).DataBytesOn(a->id()), kProtocolConnWindow / 4);
    }
    if (abandon) client->Abandon(a, NGHTTP2_CANCEL);
    else client->Reset(a, NGHTTP2_CANCEL);
    if (in_flight) {
      ASSERT_TRUE(Feed(*client, s2c));
    }
    PumpInto(all);
    EXPECT_EQ(sa->close_calls, 1);
    EXPECT_EQ(sa->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
    if (abandon) {
      EXPECT_EQ(a->close_calls, 0);
    } else {
      EXPECT_EQ(a->close_calls, 1);
      EXPECT_EQ(a->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
    }
    EXPECT_EQ(client->stream_count(), 0u);
    EXPECT_EQ(server->stream_count(), 0u);
  }

  // Every DATA byte so far was given back to the connection.
  {
    const FrameStats down = Scan(all.s2c, false);
    const FrameStats up = Scan(all.c2s, true);
    EXPECT_GE(up.WindowGrantedOn(0) + kProtocolConnWindow / 2, down.data_bytes);
  }

  // A new stream moves 1 MiB, 16 connection windows.
  RecStream* b = StartCall({"b"});
  PumpInto(all);
  const std::vector<string> msgs = Msgs(64, 16 * kKiB);
  RespondFull(sd.streams.back().get(), msgs, "0");
  Wire wb;
  PumpInto(wb);
  EXPECT_TRUE(b->received == msgs);
  EXPECT_EQ(b->close_code, 0u);
  EXPECT_EQ(Scan(wb.s2c, false).DataBytesOn(b->id()), FramedSize(msgs));
}

// The same on the server side: the server resets held request streams, some
// with the client's DATA in flight; a later upload still goes through.
TEST_F(FlowControl, ServerResetOfHeldStreamDoesNotLeakConnectionWindow) {
  H2Settings ss;
  ss.initial_window_size = 256 * kKiB;
  ss.connection_window_size = kProtocolConnWindow;
  ss.max_buffered_per_stream = 16 * kKiB;
  Init(H2Settings(), ss);
  Wire all;
  PumpInto(all);
  sd.setup = [](RecStream* st) { st->hold = true; };
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    const bool in_flight = i % 2 == 0;
    RecStream* a = StartCall(Msgs(512, 4096));
    Wire wa;
    PumpInto(wa);
    all.c2s += wa.c2s;
    all.s2c += wa.s2c;
    RecStream* sa = sd.streams.back().get();
    ASSERT_EQ(sa->id(), a->id());
    ASSERT_GE(Scan(wa.c2s, true).DataBytesOn(a->id()), ss.initial_window_size)
        << "the held stream did not get its stream window: held or reset bytes kept the "
           "connection window";
    ASSERT_GT(sa->unconsumed, 0u);
    ASSERT_GT(a->pending_send(), 0u);
    string c2s;
    if (in_flight) {
      sa->Drain();
      ASSERT_TRUE(server->Consumed(sa));
      string s2c;
      ASSERT_TRUE(server->CollectOutput(s2c));
      all.s2c += s2c;
      ASSERT_TRUE(Feed(*client, s2c));
      ASSERT_TRUE(client->CollectOutput(c2s));
      all.c2s += c2s;
      ASSERT_GT(Scan(c2s, true).DataBytesOn(a->id()), kProtocolConnWindow / 4);
    }
    server->Reset(sa, NGHTTP2_CANCEL);
    ASSERT_TRUE(Feed(*server, c2s));
    PumpInto(all);
    EXPECT_EQ(sa->close_calls, 1);
    EXPECT_EQ(a->close_calls, 1);
    EXPECT_EQ(a->close_code, static_cast<uint32_t>(NGHTTP2_CANCEL));
  }
  EXPECT_GE(Scan(all.s2c, false).WindowGrantedOn(0) + kProtocolConnWindow / 2,
            Scan(all.c2s, true).data_bytes);

  sd.setup = nullptr;
  const std::vector<string> msgs = Msgs(64, 16 * kKiB);
  RecStream* b = StartCall(msgs);
  Wire wb;
  PumpInto(wb);
  RecStream* sb = sd.streams.back().get();
  EXPECT_TRUE(sb->received == msgs);
  EXPECT_TRUE(sb->remote_ended);
  EXPECT_EQ(b->pending_send(), 0u);
}

}  // namespace
}  // namespace grpc_green
