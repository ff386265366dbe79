// Shared helpers for the H2Session GoogleTests (test_h2session.cpp,
// test_flow_control.cpp): a client and a server H2Session talking through
// std::string buffers, streams that record their hooks, a pump that moves
// bytes between the sessions, and a frame scanner for what went on the wire.
//
// Everything here is inline or a class so that every test file can include
// it; the helpers live in grpc_green::h2test.
#pragma once

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "H2Session.hpp"
#include "grpc_codec.hpp"

namespace grpc_green {
namespace h2test {

using std::string;

// ------------------------------------------------------------- helpers

inline nghttp2_nv Nv(const string& k, const string& v) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// The returned array points into `h`, which must outlive its use (nghttp2
// copies name/value pairs on submit).
inline std::vector<nghttp2_nv> ToNv(const Headers& h) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(h.size());
  for (auto& kv : h) nva.push_back(Nv(kv.first, kv.second));
  return nva;
}

inline Headers GrpcRequestHeaders(const string& path = "/pkg.Svc/Method") {
  return {{":method", "POST"},     {":scheme", "http"},
          {":path", path},         {":authority", "localhost:50051"},
          {"te", "trailers"},      {"content-type", "application/grpc"},
          {"grpc-timeout", "10S"}, {"user-agent", "grpc-green-test"}};
}

inline Headers GrpcResponseHeaders() {
  return {{":status", "200"}, {"content-type", "application/grpc"}};
}

// Value of the first header named `key`, or nullptr.
inline const string* Find(const Headers& h, const string& key) {
  for (auto& kv : h)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

inline string ValueOr(const Headers& h, const string& key, const string& dflt = "<absent>") {
  const string* v = Find(h, key);
  return v ? *v : dflt;
}

// A stream that records every hook call. Messages are drained from the
// deframer into `received` in OnMessages().
class RecStream : public H2Stream {
 public:
  explicit RecStream(size_t max_recv = 8 << 20) : H2Stream(max_recv) {}

  std::vector<string> events;  // hook names in call order
  std::vector<string> received;
  int headers_calls = 0;
  int trailers_calls = 0;
  int messages_calls = 0;
  int remote_end_calls = 0;
  int close_calls = 0;
  int hooks_after_close = 0;
  uint32_t close_code = 0xdeadbeef;
  bool attached_during_close = false;
  int32_t id_at_close = -1;

  // Optional reactions (may submit frames; must not free the stream).
  std::function<void(RecStream*)> on_headers;
  std::function<void(RecStream*)> on_messages;
  std::function<void(RecStream*)> on_remote_end;
  std::function<void(RecStream*)> on_close;
  // OnSendProgress is counted but not noted in `events` (it fires once per
  // DATA frame the stream's body produced).
  int send_progress_calls = 0;
  std::function<void(RecStream*)> on_send_progress;

  // When set, messages stay queued in the deframer (a slow reader) until
  // Drain() is called.
  bool hold = false;
  void Drain() {
    while (deframer.has_message()) received.push_back(deframer.Pop());
  }

  int total_hooks() const {
    return headers_calls + trailers_calls + messages_calls + remote_end_calls + close_calls;
  }

  void OnHeaders() override {
    Note("headers");
    ++headers_calls;
    if (on_headers) on_headers(this);
  }
  void OnTrailers() override {
    Note("trailers");
    ++trailers_calls;
  }
  void OnMessages() override {
    Note("messages");
    ++messages_calls;
    if (!hold) Drain();
    if (on_messages) on_messages(this);
  }
  void OnRemoteEnd() override {
    Note("remote_end");
    ++remote_end_calls;
    if (on_remote_end) on_remote_end(this);
  }
  void OnSendProgress() override {
    ++send_progress_calls;
    if (on_send_progress) on_send_progress(this);
  }
  void OnClose(uint32_t code) noexcept override {
    Note("close");
    ++close_calls;
    close_code = code;
    attached_during_close = attached();
    id_at_close = id();
    if (on_close) on_close(this);
  }

 private:
  void Note(const char* what) {
    if (close_calls) ++hooks_after_close;
    events.push_back(what);
  }
};

class ClientDelegate : public H2Session::Delegate {
 public:
  int goaway_calls = 0;
  uint32_t goaway_code = 0xdeadbeef;
  int32_t goaway_last_id = -2;
  int new_stream_calls = 0;

  H2Stream* NewStream(int32_t) override {
    ++new_stream_calls;  // a client must never be asked for one
    return nullptr;
  }
  void OnGoaway(uint32_t code, int32_t last) override {
    ++goaway_calls;
    goaway_code = code;
    goaway_last_id = last;
  }
};

class ServerDelegate : public H2Session::Delegate {
 public:
  std::vector<std::unique_ptr<RecStream>> streams;  // owns server streams
  std::vector<int32_t> ids;
  size_t max_recv = 8 << 20;
  bool refuse = false;
  H2Session* session = nullptr;  // to observe stream_count() in NewStream
  size_t max_attached_seen = 0;
  std::function<void(RecStream*)> setup;  // configures each new stream
  int goaway_calls = 0;
  uint32_t goaway_code = 0xdeadbeef;
  int32_t goaway_last_id = -2;

  H2Stream* NewStream(int32_t id) override {
    ids.push_back(id);
    if (refuse) return nullptr;
    if (session) max_attached_seen = std::max(max_attached_seen, session->stream_count() + 1);
    streams.push_back(std::make_unique<RecStream>(max_recv));
    if (setup) setup(streams.back().get());
    return streams.back().get();
  }
  void OnGoaway(uint32_t code, int32_t last) override {
    ++goaway_calls;
    goaway_code = code;
    goaway_last_id = last;
  }
};

// Everything each direction carried, to inspect frames afterwards.
struct Wire {
  string c2s;
  string s2c;
};

// Moves CollectOutput() of each session into Receive() of the other until
// neither produces output. `chunk` > 0 feeds Receive() in pieces of that
// size. Fails if a session reports an error or the exchange never settles.
inline ::testing::AssertionResult Pump(H2Session& client, H2Session& server, Wire* wire = nullptr,
                                       size_t chunk = 0, int* rounds = nullptr) {
  auto feed = [chunk](H2Session& to, const string& bytes) {
    if (chunk == 0) return to.Receive(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    for (size_t off = 0; off < bytes.size(); off += chunk) {
      size_t n = std::min(chunk, bytes.size() - off);
      if (!to.Receive(reinterpret_cast<const uint8_t*>(bytes.data()) + off, n)) return false;
    }
    return true;
  };
  for (int i = 0; i < 100000; ++i) {
    string c2s, s2c;
    if (!client.CollectOutput(c2s))
      return ::testing::AssertionFailure() << "client CollectOutput: " << client.error();
    if (!server.CollectOutput(s2c))
      return ::testing::AssertionFailure() << "server CollectOutput: " << server.error();
    if (c2s.empty() && s2c.empty()) {
      if (rounds) *rounds = i;
      return ::testing::AssertionSuccess();
    }
    if (wire) {
      wire->c2s += c2s;
      wire->s2c += s2c;
    }
    if (!c2s.empty() && !feed(server, c2s))
      return ::testing::AssertionFailure() << "server Receive: " << server.error();
    if (!s2c.empty() && !feed(client, s2c))
      return ::testing::AssertionFailure() << "client Receive: " << client.error();
  }
  return ::testing::AssertionFailure() << "sessions never went quiet";
}

inline bool Feed(H2Session& s, const string& bytes) {
  return s.Receive(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Frame-level summary of one direction of the wire.
// One frame header as it went on the wire. `value`: the error code of
// RST_STREAM and GOAWAY, the increment of WINDOW_UPDATE, 0 otherwise.
struct FrameInfo {
  uint8_t type = 0;
  uint8_t flags = 0;
  int32_t stream_id = 0;
  size_t length = 0;
  uint32_t value = 0;
};

struct FrameStats {
  size_t data_frames = 0;
  size_t data_bytes = 0;
  size_t max_data_len = 0;
  size_t headers_frames = 0;
  size_t window_updates = 0;
  size_t rst_frames = 0;
  size_t goaway_frames = 0;
  std::vector<uint32_t> rst_codes;
  std::vector<uint32_t> goaway_codes;
  std::vector<FrameInfo> frames;  // every frame, in wire order
  bool well_formed = true;

  // DATA payload bytes carried on `stream_id`.
  size_t DataBytesOn(int32_t stream_id) const {
    size_t n = 0;
    for (auto& f : frames)
      if (f.type == NGHTTP2_DATA && f.stream_id == stream_id) n += f.length;
    return n;
  }
  // DATA frames with a non-empty payload on `stream_id`.
  size_t NonEmptyDataFramesOn(int32_t stream_id) const {
    size_t n = 0;
    for (auto& f : frames)
      if (f.type == NGHTTP2_DATA && f.stream_id == stream_id && f.length > 0) ++n;
    return n;
  }
  // Sum of the WINDOW_UPDATE increments for `stream_id` (0: the connection).
  uint64_t WindowGrantedOn(int32_t stream_id) const {
    uint64_t n = 0;
    for (auto& f : frames)
      if (f.type == NGHTTP2_WINDOW_UPDATE && f.stream_id == stream_id) n += f.value;
    return n;
  }
  // Frames of `type` on `stream_id`, in wire order.
  std::vector<FrameInfo> FramesOn(int32_t stream_id, uint8_t type) const {
    std::vector<FrameInfo> out;
    for (auto& f : frames)
      if (f.type == type && f.stream_id == stream_id) out.push_back(f);
    return out;
  }
};

inline constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
inline constexpr size_t kPrefaceLen = sizeof(kPreface) - 1;

// `client_to_server`: the bytes may start with the connection preface.
inline FrameStats Scan(const string& bytes, bool client_to_server) {
  FrameStats st;
  size_t off = 0;
  if (client_to_server && bytes.compare(0, kPrefaceLen, kPreface) == 0) off = kPrefaceLen;
  auto u8 = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])); };
  while (off < bytes.size()) {
    if (bytes.size() - off < 9) {
      st.well_formed = false;
      break;
    }
    size_t len = (u8(off) << 16) | (u8(off + 1) << 8) | u8(off + 2);
    uint8_t type = static_cast<uint8_t>(u8(off + 3));
    if (bytes.size() - off - 9 < len) {
      st.well_formed = false;
      break;
    }
    const size_t p = off + 9;
    FrameInfo fi;
    fi.type = type;
    fi.flags = static_cast<uint8_t>(u8(off + 4));
    fi.stream_id = static_cast<int32_t>(((u8(off + 5) & 0x7f) << 24) | (u8(off + 6) << 16) |
                                        (u8(off + 7) << 8) | u8(off + 8));
    fi.length = len;
    auto be32 = [&](size_t i) {
      return (u8(i) << 24) | (u8(i + 1) << 16) | (u8(i + 2) << 8) | u8(i + 3);
    };
    if ((type == NGHTTP2_RST_STREAM || type == NGHTTP2_WINDOW_UPDATE) && len == 4)
      fi.value = be32(p) & (type == NGHTTP2_WINDOW_UPDATE ? 0x7fffffffu : 0xffffffffu);
    if (type == NGHTTP2_GOAWAY && len >= 8) fi.value = be32(p + 4);
    st.frames.push_back(fi);
    switch (type) {
      case NGHTTP2_DATA:
        ++st.data_frames;
        st.data_bytes += len;
        st.max_data_len = std::max(st.max_data_len, len);
        break;
      case NGHTTP2_HEADERS:
        ++st.headers_frames;
        break;
      case NGHTTP2_RST_STREAM:
        ++st.rst_frames;
        if (len == 4)
          st.rst_codes.push_back((u8(p) << 24) | (u8(p + 1) << 16) | (u8(p + 2) << 8) | u8(p + 3));
        break;
      case NGHTTP2_GOAWAY:
        ++st.goaway_frames;
        if (len >= 8)
          st.goaway_codes.push_back((u8(p + 4) << 24) | (u8(p + 5) << 16) | (u8(p + 6) << 8) |
                                    u8(p + 7));
        break;
      case NGHTTP2_WINDOW_UPDATE:
        ++st.window_updates;
        break;
      default:
        break;
    }
    off = p + len;
  }
  if (!st.well_formed) ADD_FAILURE() << "truncated or malformed frame stream";
  return st;
}

// ------------------------------------------------------------- fixture

class H2SessionPair : public ::testing::Test {
 public:  // reachable from hook lambdas
  void SetUp() override { Init(H2Settings(), H2Settings()); }

  void Init(const H2Settings& client_settings, const H2Settings& server_settings) {
    server.reset();
    client.reset();
    client = std::make_unique<H2Session>(H2Session::kClient, &cd, client_settings);
    server = std::make_unique<H2Session>(H2Session::kServer, &sd, server_settings);
    sd.session = server.get();
    ASSERT_TRUE(client->ok()) << client->error();
    ASSERT_TRUE(server->ok()) << server->error();
    EXPECT_EQ(client->role(), H2Session::kClient);
    EXPECT_EQ(server->role(), H2Session::kServer);
  }

  // Opens a gRPC call carrying `messages`; closes the request when `close`.
  RecStream* StartCall(const std::vector<string>& messages, bool close = true,
                       const string& path = "/pkg.Svc/Method", size_t max_recv = 8 << 20) {
    calls.push_back(std::make_unique<RecStream>(max_recv));
    RecStream* c = calls.back().get();
    for (auto& m : messages) AppendFramedMessage(c->sendbuf, m.data(), m.size());
    c->send_closed = close;
    Headers h = GrpcRequestHeaders(path);
    auto nva = ToNv(h);
    int32_t id = client->SubmitRequest(c, nva.data(), nva.size());
    EXPECT_GT(id, 0) << client->error();
    EXPECT_EQ(id, c->id());
    EXPECT_TRUE(c->attached());
    EXPECT_EQ(c->session(), client.get());
    return c;
  }

  // Server side of a full gRPC response: headers, messages, trailers.
  void RespondFull(RecStream* s, const std::vector<string>& messages, const string& status = "0",
                   Headers extra_trailers = {}) {
    Headers h = GrpcResponseHeaders();
    auto nva = ToNv(h);
    ASSERT_TRUE(server->SubmitResponse(s, nva.data(), nva.size(), false));
    for (auto& m : messages) AppendFramedMessage(s->sendbuf, m.data(), m.size());
    s->send_trailers = {{"grpc-status", status}};
    for (auto& t : extra_trailers) s->send_trailers.push_back(t);
    s->has_trailers = true;
    s->send_closed = true;
    server->ResumeData(s);
  }

  // Trailers-Only response: one HEADERS frame with END_STREAM.
  void RespondTrailersOnly(H2Session& session, RecStream* s, const string& status,
                           const string& message) {
    Headers h = GrpcResponseHeaders();
    h.emplace_back("grpc-status", status);
    h.emplace_back("grpc-message", message);
    auto nva = ToNv(h);
    ASSERT_TRUE(session.SubmitResponse(s, nva.data(), nva.size(), true));
  }

  RecStream* ServerStream(size_t i) {
    return i < sd.streams.size() ? sd.streams[i].get() : nullptr;
  }

  // Declared before the sessions: streams outlive the sessions that may
  // still point at them.
  ClientDelegate cd;
  ServerDelegate sd;
  std::vector<std::unique_ptr<RecStream>> calls;  // client streams
  std::unique_ptr<H2Session> client;
  std::unique_ptr<H2Session> server;
};

}  // namespace h2test
}  // namespace grpc_green
