// Benchmark server for client-side benchmarks (bench/client.py): the
// bench.Echo service of bench/echo.proto in C++ on gRPC's asynchronous
// (completion-queue) API, one thread serving every call, so that the server
// side is as cheap per call and per message as libgrpc++ allows and is not
// what limits a client where a reasonable server would not be.
//
//   echo_server_cpp [PORT [FLUSH_EVERY]]
//
// PORT 0 (the default): the kernel picks a free port. Listens on 127.0.0.1,
// prints the bound port on the first line of stdout (the convention of
// bench/servers/echo_server.py), serves until SIGTERM or SIGINT, then shuts
// down and exits 0. Built by `make build/bench/echo_server_cpp`.
//
// Why this shape:
//  * One completion queue, drained by one thread. The server is pinned to one
//    core; the thread that polls the sockets is the one that runs the
//    handlers, so no call or message is handed between threads. (gRPC's
//    callback API, which this server used before, polls on a pool of
//    threads and hands events between them: on the 2-core development
//    machine about 80 us of server CPU per sequential unary call against
//    50 us here.)
//  * ServerStream writes with WriteOptions().set_buffer_hint() on all but
//    the first, every FLUSH_EVERY-th (default 128) and the last message. A
//    hinted write is queued in the HTTP/2 transport (up to its 64 KiB write
//    buffer) and completes at once; the next unhinted one sends everything
//    queued in as few DATA frames and syscalls as the transport manages.
//    Without hints every 16-byte message is its own write to the socket:
//    6.7 us of server CPU per message, 1.1 us with them. The first write is
//    never hinted: it carries the response headers, and gRPC 1.51 does not
//    start a write for a batch of headers plus a hinted message, so the
//    stream would never start. The last message goes out with the status
//    (WriteAndFinish).
//  * Unary and BidiStream answer each message as soon as it has been read
//    (a ping-pong client waits for each echo, so nothing may be held back);
//    ClientStream reads one message at a time, as the API allows.
//  * Request slots: kPendingRequests per method are kept posted, so calls
//    arriving together do not wait for a handler to re-arm.
//
// Streamed payloads carry their 0-based position in the first 4 bytes (big
// endian); see echo.proto.

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "echo.grpc.pb.h"

namespace {

using bench::EchoMsg;
using bench::StreamRequest;
using bench::StreamSummary;
using grpc::ServerCompletionQueue;
using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

constexpr uint32_t kMaxPayloadBytes = 4u << 20;
constexpr int kPendingRequests = 16;

uint32_t g_flush_every = 128;

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

// One call in progress. Its address is the completion-queue tag of the one
// operation it has outstanding at any time; Proceed(ok) runs when that
// operation completes.
class Call {
 public:
  virtual ~Call() = default;
  virtual void Proceed(bool ok) = 0;
};

using Service = bench::Echo::AsyncService;

class UnaryCall final : public Call {
 public:
  UnaryCall(Service* svc, ServerCompletionQueue* cq) : svc_(svc), cq_(cq), responder_(&ctx_) {
    svc_->RequestUnary(&ctx_, &req_, &responder_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    if (!started_) {
      if (!ok) {  // server shutting down
        delete this;
        return;
      }
      started_ = true;
      new UnaryCall(svc_, cq_);
      resp_.set_payload(req_.payload());
      responder_.Finish(resp_, Status::OK, this);
      return;
    }
    delete this;  // Finish done (or failed: the client went away)
  }

 private:
  Service* svc_;
  ServerCompletionQueue* cq_;
  ServerContext ctx_;
  EchoMsg req_, resp_;
  grpc::ServerAsyncResponseWriter<EchoMsg> responder_;
  bool started_ = false;
};

// ServerStream: `count` messages of `payload_bytes`, the last one together
// with the status; hinted (buffered) writes between flushes, see above.
class ServerStreamCall final : public Call {
 public:
  ServerStreamCall(Service* svc, ServerCompletionQueue* cq) : svc_(svc), cq_(cq), writer_(&ctx_) {
    svc_->RequestServerStream(&ctx_, &req_, &writer_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    switch (state_) {
      case kRequested:
        if (!ok) {
          delete this;
          return;
        }
        new ServerStreamCall(svc_, cq_);
        count_ = req_.count();
        if (count_ > 0 &&
            (req_.payload_bytes() < 4 || req_.payload_bytes() > kMaxPayloadBytes)) {
          Finish(Status(StatusCode::INVALID_ARGUMENT,
                        "payload_bytes must be 4.." + std::to_string(kMaxPayloadBytes)));
          return;
        }
        msg_.mutable_payload()->assign(req_.payload_bytes(), 'x');
        Next();
        return;
      case kWriting:
        if (!ok) {  // the client went away
          Finish(Status(StatusCode::CANCELLED, "write failed"));
          return;
        }
        Next();
        return;
      case kFinishing:
        delete this;
        return;
    }
  }

 private:
  void Next() {
    if (sent_ == count_) {  // count == 0
      Finish(Status::OK);
      return;
    }
    PutIndex(msg_.mutable_payload(), sent_);
    ++sent_;
    if (sent_ == count_) {
      state_ = kFinishing;
      writer_.WriteAndFinish(msg_, grpc::WriteOptions(), Status::OK, this);
      return;
    }
    grpc::WriteOptions options;
    // Never the first write: it carries the response headers, and a batch
    // holding them with a hinted message waits for a write nobody starts.
    if (sent_ > 1 && sent_ % g_flush_every != 0) options.set_buffer_hint();
    state_ = kWriting;
    writer_.Write(msg_, options, this);
  }

  void Finish(const Status& status) {
    state_ = kFinishing;
    writer_.Finish(status, this);
  }

  enum State { kRequested, kWriting, kFinishing };
  Service* svc_;
  ServerCompletionQueue* cq_;
  ServerContext ctx_;
  StreamRequest req_;
  grpc::ServerAsyncWriter<EchoMsg> writer_;
  State state_ = kRequested;
  uint32_t count_ = 0, sent_ = 0;
  EchoMsg msg_;
};

// ClientStream: count what arrives, check positions, answer with a summary.
class ClientStreamCall final : public Call {
 public:
  ClientStreamCall(Service* svc, ServerCompletionQueue* cq) : svc_(svc), cq_(cq), reader_(&ctx_) {
    svc_->RequestClientStream(&ctx_, &reader_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    switch (state_) {
      case kRequested:
        if (!ok) {
          delete this;
          return;
        }
        new ClientStreamCall(svc_, cq_);
        state_ = kReading;
        reader_.Read(&msg_, this);
        return;
      case kReading:
        if (ok) {
          bytes_ += msg_.payload().size();
          if (HasIndex(msg_.payload(), messages_)) ++in_sequence_;
          ++messages_;
          reader_.Read(&msg_, this);
          return;
        }
        // Half-close (or cancellation: then the status is not delivered anyway).
        summary_.set_messages(messages_);
        summary_.set_payload_bytes(bytes_);
        summary_.set_in_sequence(in_sequence_);
        state_ = kFinishing;
        reader_.Finish(summary_, Status::OK, this);
        return;
      case kFinishing:
        delete this;
        return;
    }
  }

 private:
  enum State { kRequested, kReading, kFinishing };
  Service* svc_;
  ServerCompletionQueue* cq_;
  ServerContext ctx_;
  grpc::ServerAsyncReader<StreamSummary, EchoMsg> reader_;
  State state_ = kRequested;
  EchoMsg msg_;
  StreamSummary summary_;
  uint64_t messages_ = 0, bytes_ = 0, in_sequence_ = 0;
};

// BidiStream: read one, write it back, read the next.
class BidiCall final : public Call {
 public:
  BidiCall(Service* svc, ServerCompletionQueue* cq) : svc_(svc), cq_(cq), stream_(&ctx_) {
    svc_->RequestBidiStream(&ctx_, &stream_, cq_, cq_, this);
  }

  void Proceed(bool ok) override {
    switch (state_) {
      case kRequested:
        if (!ok) {
          delete this;
          return;
        }
        new BidiCall(svc_, cq_);
        state_ = kReading;
        stream_.Read(&msg_, this);
        return;
      case kReading:
        if (!ok) {  // half-close
          state_ = kFinishing;
          stream_.Finish(Status::OK, this);
          return;
        }
        state_ = kWriting;
        stream_.Write(msg_, this);
        return;
      case kWriting:
        if (!ok) {
          state_ = kFinishing;
          stream_.Finish(Status(StatusCode::CANCELLED, "write failed"), this);
          return;
        }
        state_ = kReading;
        stream_.Read(&msg_, this);
        return;
      case kFinishing:
        delete this;
        return;
    }
  }

 private:
  enum State { kRequested, kReading, kWriting, kFinishing };
  Service* svc_;
  ServerCompletionQueue* cq_;
  ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<EchoMsg, EchoMsg> stream_;
  State state_ = kRequested;
  EchoMsg msg_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  long flush = g_flush_every;
  if (argc > 3 || (argc >= 2 && ((port = std::atoi(argv[1])) < 0 || port > 65535)) ||
      (argc == 3 && (flush = std::atol(argv[2])) < 1)) {
    std::cerr << "usage: " << argv[0] << " [PORT [FLUSH_EVERY]]\n";
    return 2;
  }
  g_flush_every = static_cast<uint32_t>(flush);
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

  Service service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                           grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::cerr << "could not bind 127.0.0.1:" << port << "\n";
    return 1;
  }
  for (int i = 0; i < kPendingRequests; ++i) {
    new UnaryCall(&service, cq.get());
    new ServerStreamCall(&service, cq.get());
    new ClientStreamCall(&service, cq.get());
    new BidiCall(&service, cq.get());
  }

  // The one serving thread. Once the server has shut down (every call ended
  // or cancelled), `stopping` makes it drop whatever completes instead of
  // starting new operations on the queue being shut down.
  std::mutex mu;
  bool stopping = false;
  std::thread serving([&] {
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) {
        delete static_cast<Call*>(tag);
      } else {
        static_cast<Call*>(tag)->Proceed(ok);
      }
    }
  });
  std::cout << bound << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
    cq->Shutdown();
  }
  serving.join();
  return 0;
}
