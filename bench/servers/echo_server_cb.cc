// Server benchmark (bench/run.py), row `cpp`: the Unary method of the
// bench.Echo service of bench/echo.proto on gRPC C++'s callback API
// (Echo::CallbackService, the default ServerUnaryReactor): the "C++ gRPC
// callback server" of shared/docs/anchors.md and of the issue's target.
// libgrpc++ runs it on a pool of its own threads; run.py pins the process to
// one core with taskset, which confines them all to that core.
//
//   echo_server_cb [PORT]     (default 0: the kernel picks a free port)
//
// Listens on 127.0.0.1, prints the bound port on the first line of stdout
// (the convention of bench/servers/echo_server.py), serves until SIGTERM or
// SIGINT, then shuts down and exits 0. The other methods of the service
// answer UNIMPLEMENTED. Built by `make build/bench/echo_server_cb`.
// (bench/cpp/echo_server.cc, the client benchmark's server, uses the
// asynchronous API with one serving thread; run.py measures it too, row
// `cpp_async`.)

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"

namespace {

class EchoService final : public bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const bench::EchoMsg* req,
                                  bench::EchoMsg* resp) override {
    resp->set_payload(req->payload());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
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
