// Benchmark server for client-side benchmarks (bench/client.py): the
// bench.Echo service of bench/echo.proto on the gRPC C++ callback API, so that
// the server side is never what limits a Python client.
//
//   echo_server_cpp [PORT]     (default 0: the kernel picks a free port)
//
// Listens on 127.0.0.1, prints the bound port on the first line of stdout
// (the convention of bench/servers/echo_server.py), serves until SIGTERM or
// SIGINT, then shuts down and exits 0. Built by `make build/bench/echo_server_cpp`.
//
// Streamed payloads carry their 0-based position in the first 4 bytes (big
// endian); see echo.proto.

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"

namespace {

using bench::EchoMsg;
using bench::StreamRequest;
using bench::StreamSummary;
using grpc::CallbackServerContext;
using grpc::Status;
using grpc::StatusCode;

constexpr uint32_t kMaxPayloadBytes = 4u << 20;

void PutIndex(std::string* payload, uint32_t index) {
  (*payload)[0] = static_cast<char>(index >> 24);
  (*payload)[1] = static_cast<char>(index >> 16);
  (*payload)[2] = static_cast<char>(index >> 8);
  (*payload)[3] = static_cast<char>(index);
}

bool HasIndex(const std::string& payload, uint64_t index) {
  if (payload.size() < 4 || index > UINT32_MAX) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  uint32_t got = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                 (uint32_t{p[2]} << 8) | uint32_t{p[3]};
  return got == index;
}

// ServerStream: `count` messages of `payload_bytes`, one write in flight at a
// time (the callback API allows no more), the last one merged with the status.
class StreamWriter final : public grpc::ServerWriteReactor<EchoMsg> {
 public:
  explicit StreamWriter(const StreamRequest* req) : count_(req->count()) {
    if (count_ > 0 && (req->payload_bytes() < 4 || req->payload_bytes() > kMaxPayloadBytes)) {
      Finish(Status(StatusCode::INVALID_ARGUMENT, "payload_bytes must be 4.." +
                                                      std::to_string(kMaxPayloadBytes)));
      return;
    }
    msg_.mutable_payload()->assign(req->payload_bytes(), 'x');
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {  // client went away
      Finish(Status(StatusCode::CANCELLED, "write failed"));
      return;
    }
    Next();
  }

  void OnDone() override { delete this; }

 private:
  void Next() {
    if (sent_ == count_) {  // count == 0
      Finish(Status::OK);
      return;
    }
    PutIndex(msg_.mutable_payload(), sent_);
    if (++sent_ == count_) {
      StartWriteAndFinish(&msg_, grpc::WriteOptions(), Status::OK);
    } else {
      StartWrite(&msg_);
    }
  }

  const uint32_t count_;
  uint32_t sent_ = 0;
  EchoMsg msg_;
};

// ClientStream: count what arrives, check positions, answer with a summary.
class StreamReader final : public grpc::ServerReadReactor<EchoMsg> {
 public:
  explicit StreamReader(StreamSummary* summary) : summary_(summary) { StartRead(&msg_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // half-close (or cancellation: then the status is not delivered anyway)
      summary_->set_messages(messages_);
      summary_->set_payload_bytes(bytes_);
      summary_->set_in_sequence(in_sequence_);
      Finish(Status::OK);
      return;
    }
    bytes_ += msg_.payload().size();
    if (HasIndex(msg_.payload(), messages_)) ++in_sequence_;
    ++messages_;
    StartRead(&msg_);
  }

  void OnDone() override { delete this; }

 private:
  StreamSummary* summary_;
  EchoMsg msg_;
  uint64_t messages_ = 0, bytes_ = 0, in_sequence_ = 0;
};

// BidiStream: read one, write it back, read the next.
class StreamEchoer final : public grpc::ServerBidiReactor<EchoMsg, EchoMsg> {
 public:
  StreamEchoer() { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(Status::OK);
      return;
    }
    out_.Swap(&in_);
    StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(Status(StatusCode::CANCELLED, "write failed"));
      return;
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  EchoMsg in_, out_;
};

class EchoService final : public bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(CallbackServerContext* ctx, const EchoMsg* req,
                                  EchoMsg* resp) override {
    resp->set_payload(req->payload());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<EchoMsg>* ServerStream(CallbackServerContext*,
                                                  const StreamRequest* req) override {
    return new StreamWriter(req);
  }

  grpc::ServerReadReactor<EchoMsg>* ClientStream(CallbackServerContext*,
                                                 StreamSummary* summary) override {
    return new StreamReader(summary);
  }

  grpc::ServerBidiReactor<EchoMsg, EchoMsg>* BidiStream(CallbackServerContext*) override {
    return new StreamEchoer();
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  if (argc > 2 || (argc == 2 && (port = std::atoi(argv[1])) < 0) || port > 65535) {
    std::cerr << "usage: " << argv[0] << " [PORT]\n";
    return 2;
  }
  // Block the stop signals before gRPC starts its threads (they inherit the
  // mask), then wait for one on the main thread.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // Debian's abseil runs its mutex deadlock detector on every lock, which
  // shows in profiles of this server; it has no use here.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  EchoService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                           grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::cerr << "could not bind 127.0.0.1:" << port << "\n";
    return 1;
  }
  std::cout << bound << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Wait();
  return 0;
}
