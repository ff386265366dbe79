#include "Connection.hpp"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include <exception>

namespace grpc_green {

Connection::Connection(Reactor* reactor, H2Session::Role role, const H2Settings& settings)
    : reactor_(reactor), state_(kConnecting) {
  h2_ = std::make_unique<H2Session>(role, this, settings);
  reactor_->Track(this);
}

Connection::~Connection() {
  reactor_->Untrack(this);
  reactor_->Unmark(this);
  handshake_timer_.reset();
  io_.reset();
  if (fd_ >= 0) ::close(fd_);
}

void Connection::Adopt(int fd, std::string peer, double handshake_timeout) noexcept {
  fd_ = fd;
  state_ = kReady;
  handshake_timeout_ = handshake_timeout;
  try {
    peer_ = std::move(peer);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    io_ = reactor_->io().NewIo(fd_, this);
    if (!h2_->ok()) {
      Close("HTTP/2 session: " + h2_->error());
      return;
    }
    if (!io_->Set(kIoRead)) {
      Close("The event loop refused to watch the socket");
      return;
    }
    if (!StartHandshakeTimer()) return;
    reactor_->MarkDirty(this);  // our SETTINGS
  } catch (const std::exception& e) {
    Fail(e.what());
  }
}

void Connection::Connect(std::vector<SocketAddress> addresses, double handshake_timeout) noexcept {
  addresses_ = std::move(addresses);
  next_address_ = 0;
  handshake_timeout_ = handshake_timeout;
  try {
    StartNextAddress();
  } catch (const std::exception& e) {
    Fail(e.what());
  }
}

void Connection::StartNextAddress() {
  if (handshake_timer_) handshake_timer_->Stop();
  io_.reset();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  while (next_address_ < addresses_.size()) {
    const SocketAddress& a = addresses_[next_address_++];
    peer_ = a.Describe();
    int fd = socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error_ = peer_ + ": socket: " + strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rv = ::connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len);
    if (rv == 0 || errno == EINPROGRESS) {
      fd_ = fd;
      io_ = reactor_->io().NewIo(fd_, this);
      if (!StartHandshakeTimer()) return;
      if (rv == 0) {
        FinishConnect();
      } else if (!io_->Set(kIoWrite)) {
        Close("The event loop refused to watch the socket");
      }
      return;
    }
    int err = errno;
    ::close(fd);
    error_ = peer_ + ": Failed to connect to remote host: " + strerror(err);
  }
  state_ = kClosed;
  OnClosed();
}

void Connection::FinishConnect() {
  if (!h2_->ok()) {
    Close("HTTP/2 session: " + h2_->error());
    return;
  }
  state_ = kReady;
  if (!io_->Set(kIoRead)) {
    Close("The event loop refused to watch the socket");
    return;
  }
  reactor_->MarkDirty(this);  // connection preface + SETTINGS
  // OnReady() waits for the server's SETTINGS (FinishHandshake()).
}

void Connection::FinishHandshake() {
  handshake_done_ = true;
  if (handshake_timer_) handshake_timer_->Stop();
  OnReady();
}

bool Connection::StartHandshakeTimer() {
  if (handshake_timeout_ < 0) return true;
  if (!handshake_timer_) handshake_timer_ = reactor_->io().NewTimer(this);
  if (handshake_timer_->Start(handshake_timeout_)) return true;
  Close("The event loop refused the handshake timer");
  return false;
}

void Connection::OnTimer() noexcept {
  if (handshake_done_ || state_ == kClosed) return;
  try {
    if (state_ == kConnecting) {  // no answer to the SYN: the next address
      error_ = peer_ + ": Failed to connect to remote host: " + strerror(ETIMEDOUT);
      StartNextAddress();
    } else if (h2_->role() == H2Session::kClient) {
      // grpcio's words for it.
      error_ = peer_ + ": connection attempt timed out before receiving SETTINGS frame";
      Close(error_);
    } else {
      GoawayAndClose("Did not receive HTTP/2 settings before handshake timeout",
                     NGHTTP2_INTERNAL_ERROR, true);
    }
  } catch (const std::exception& e) {
    Fail(e.what());
  }
}

void Connection::OnIo(int events) noexcept {
  try {
    HandleIo(events);
  } catch (const std::exception& e) {
    Fail(e.what());
  }
}

void Connection::HandleIo(int events) {
  if (state_ == kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == 0) {
      FinishConnect();
    } else {
      error_ = peer_ + ": Failed to connect to remote host: " + strerror(err);
      StartNextAddress();
    }
    return;
  }
  if (state_ != kReady) return;
  if (events & kIoRead) {
    uint8_t buf[65536];
    for (int i = 0; i < 16; ++i) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        if (!h2_->Receive(buf, static_cast<size_t>(n))) {
          // nghttp2 queued a GOAWAY for the protocol error: send it, close.
          std::string reason = "HTTP/2 error: " + h2_->error();
          if (h2_->CollectOutput(out_) && out_.size() > out_off_)
            (void)::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
          Close(reason);
          return;
        }
        if (!handshake_done_ && h2_->settings_received()) FinishHandshake();
        if (state_ != kReady) return;  // a hook closed us
        if (static_cast<size_t>(n) < sizeof buf) break;
        continue;
      }
      if (n == 0) {
        Close("Socket closed");
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      Close(std::string("recvmsg:") + strerror(errno));
      return;
    }
    reactor_->MarkDirty(this);  // acks and window updates the input produced
  }
  if (events & kIoWrite) DoFlush();
}

void Connection::Flush() noexcept {
  try {
    DoFlush();
  } catch (const std::exception& e) {
    Fail(e.what());
  }
}

void Connection::DoFlush() {
  if (state_ != kReady) return;
  if (!h2_->CollectOutput(out_)) {
    Close("HTTP/2 error: " + h2_->error());
    return;
  }
  while (out_off_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Close(std::string("sendmsg:") + strerror(errno));
    return;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > (1 << 16)) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  UpdateWriteInterest();
  MaybeFinishDrain();
}

void Connection::UpdateWriteInterest() {
  if (!io_ || state_ != kReady) return;
  if (!io_->Set(kIoRead | (out_off_ < out_.size() ? kIoWrite : 0)))
    Close("The event loop refused to watch the socket");
}

void Connection::Drain(uint32_t error_code) {
  if (state_ != kReady || draining_) return;
  draining_ = true;
  h2_->Goaway(error_code);
  Kick();
}

void Connection::MaybeFinishDrain() {
  if (state_ != kReady) return;
  if ((draining_ && h2_->stream_count() == 0 && out_off_ == out_.size()) || !h2_->WantsIo())
    Close(h2_->error().empty() ? "Connection drained" : "HTTP/2 error: " + h2_->error());
}

void Connection::OnGoaway(uint32_t, int32_t) {
  // The peer accepts no new streams here: the owner routes new calls to a
  // new connection, this one ends when its streams have.
  if (!draining_) {
    draining_ = true;
    OnClosed();
  }
}

void Connection::GoawayAndClose(std::string_view reason, uint32_t error_code, bool debug) noexcept {
  if (state_ == kReady) {
    h2_->Goaway(error_code, debug ? reason : std::string_view());
    Flush();
  }
  Close(reason);
}

void Connection::Drop() noexcept {
  handshake_timer_.reset();
  io_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  state_ = kClosed;
}

void Connection::Close(std::string_view reason) noexcept {
  if (state_ == kClosed) return;
  State was = state_;
  state_ = kClosed;
  if (error_.empty()) {
    try {
      error_.assign(reason);
    } catch (...) {
      // Out of memory: the streams end without the reason.
    }
  }
  reactor_->Unmark(this);
  if (handshake_timer_) handshake_timer_->Stop();
  io_.reset();  // watchers stop before the fd closes
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (was == kReady) h2_->CloseAllStreams(kConnectionLost);
  OnClosed();
}

void Connection::Fail(const char* what) noexcept {
  std::string reason;
  try {
    reason = std::string("Connection failed: ") + what;
  } catch (...) {
  }
  Close(reason);
}

}  // namespace grpc_green
