// gRPC wire codecs: message framing, grpc-timeout, grpc-message percent
// encoding, -bin metadata base64, metadata validation and status mapping.
//
// Pure C++17, no Python and no nghttp2: this layer is what the GoogleTest
// suite drives directly. Nothing here allocates Python objects or throws;
// errors are reported through return values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grpc_green {

// gRPC status codes (values fixed by the gRPC protocol).
enum StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// ---------------------------------------------------------------- framing

constexpr size_t kFrameHeaderSize = 5;

// Appends the 5-byte prefix (compressed flag 0, big-endian length) and the
// payload to `out`.
void AppendFramedMessage(std::string& out, const char* data, size_t len);

// A FIFO of messages. It allocates nothing until the first message and
// keeps its capacity when drained: a unary call's queue holds one message
// for a moment, and std::deque would allocate its map and a 512-byte block
// for every call.
class MessageQueue {
 public:
  using const_iterator = std::vector<std::string>::const_iterator;
  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  const std::string& front() const { return items_[head_]; }
  const std::string& back() const { return items_.back(); }
  const std::string& operator[](size_t i) const { return items_[head_ + i]; }
  const_iterator begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  const_iterator end() const { return items_.end(); }
  template <class... Args>
  void emplace_back(Args&&... args) {
    items_.emplace_back(std::forward<Args>(args)...);
  }
  std::string pop_front() {
    std::string m = std::move(items_[head_++]);
    if (head_ == items_.size()) {
      clear();
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      // A reader that never quite catches up: drop the taken prefix once it
      // is the larger half.
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return m;
  }
  void clear() {
    items_.clear();
    head_ = 0;
  }

 private:
  std::vector<std::string> items_;
  size_t head_ = 0;
};

// Turns a byte stream (DATA frame payloads, in order, split or coalesced
// anywhere) into whole messages.
//
// Feed() appends every complete message to messages(); a partial message is
// kept until the rest arrives. Zero-length messages are delivered as empty
// strings. On a length prefix above max_message_size, or a set compressed
// flag (grpc_green does not negotiate compression yet), the deframer enters
// an error state: Feed() returns false, error() says why, and further input
// is ignored.
class Deframer {
 public:
  explicit Deframer(size_t max_message_size) : max_(max_message_size) {}

  bool Feed(const uint8_t* data, size_t len);

  // Complete messages in arrival order; take them with Pop() so that
  // queued_bytes() stays true (flow control reads it).
  const MessageQueue& messages() const { return messages_; }
  bool has_message() const { return !messages_.empty(); }
  std::string Pop() {
    std::string m = messages_.pop_front();
    queued_ -= m.size();
    return m;
  }
  void Clear() {
    messages_.clear();
    queued_ = 0;
  }
  // Bytes of complete messages not yet popped.
  size_t queued_bytes() const { return queued_; }
  bool failed() const { return error_code_ != kOk; }
  StatusCode error_code() const { return error_code_; }
  const std::string& error() const { return error_; }
  // True when bytes of an incomplete message are buffered (a stream that
  // ends here was truncated).
  bool has_partial() const { return header_fill_ > 0 || need_ > 0 || in_body_; }
  size_t max_message_size() const { return max_; }
  // Before the first Feed().
  void set_max_message_size(size_t max) { max_ = max; }

 private:
  size_t max_;
  MessageQueue messages_;
  size_t queued_ = 0;
  uint8_t header_[kFrameHeaderSize];
  size_t header_fill_ = 0;
  bool in_body_ = false;
  size_t need_ = 0;  // body bytes still missing for the current message
  std::string body_;
  StatusCode error_code_ = kOk;
  std::string error_;
};

// ------------------------------------------------------------ grpc-timeout

// Encodes a positive timeout as a grpc-timeout header value: at most 8
// digits followed by a unit (n, u, m, S, M, H), choosing the finest unit
// whose value fits without losing the timeout (rounding up, never down).
// Non-positive timeouts encode as "1n".
std::string EncodeGrpcTimeout(int64_t nanoseconds);

// Parses a grpc-timeout value. Returns false on anything malformed (empty,
// more than 8 digits, non-digit, unknown unit). Saturates instead of
// overflowing int64.
bool ParseGrpcTimeout(std::string_view value, int64_t* nanoseconds);

// ------------------------------------------------------------ grpc-message

// Percent-encodes every byte outside 0x20..0x7E and '%' itself, as %XX
// with uppercase hex. Input is UTF-8 bytes.
std::string PercentEncode(std::string_view in);

// Decodes %XX sequences; a '%' not followed by two hex digits is kept as
// is. Never fails. The result is bytes that the caller decodes as UTF-8
// with replacement.
std::string PercentDecode(std::string_view in);

// --------------------------------------------------------------- metadata

// Standard base64 alphabet. Encode emits no padding (what gRPC sends).
std::string Base64Encode(std::string_view in);
// Accepts padded and unpadded input; returns false on an invalid character
// or impossible length.
bool Base64Decode(std::string_view in, std::string* out);

// Legal metadata key: non-empty, only 0-9 a-z - _ . (lowercase), and not
// starting with ':' (pseudo headers are never user metadata).
bool IsValidMetadataKey(std::string_view key);
// Legal non-binary value: every byte in 0x20..0x7E.
bool IsValidMetadataValue(std::string_view value);
// Key ends in "-bin".
bool IsBinaryHeader(std::string_view key);
// Keys reserved by the transport and gRPC that user metadata must not carry
// and that are not surfaced as user metadata on receipt (":..", "te",
// "content-type", "grpc-*" except grpc-status-details-bin, "user-agent").
bool IsReservedHeader(std::string_view key);

// ----------------------------------------------------------- status maps

// Status for a response without grpc-status, from its HTTP status
// (the gRPC HTTP-to-gRPC status mapping: 400 INTERNAL, 401
// UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429 / 502 /
// 503 / 504 UNAVAILABLE, anything else UNKNOWN).
StatusCode StatusFromHttpStatus(int http_status);

// Status for a stream reset with an HTTP/2 error code (gRPC's
// PROTOCOL-HTTP2 mapping: NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR,
// FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, FRAME_SIZE_ERROR, COMPRESSION_ERROR,
// CONNECT_ERROR -> INTERNAL; REFUSED_STREAM -> UNAVAILABLE; CANCEL ->
// CANCELLED; ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED; INADEQUATE_SECURITY ->
// PERMISSION_DENIED; anything else INTERNAL).
StatusCode StatusFromHttp2Error(uint32_t error_code);

// Parses a grpc-status value ("0".."16", possibly larger). Returns false if
// not a non-negative decimal integer below 2^31.
bool ParseGrpcStatus(std::string_view value, int* code);

}  // namespace grpc_green
