// gRPC wire codecs. See grpc_codec.hpp for the contract of each function and
// gRPC's doc/PROTOCOL-HTTP2.md / doc/http-grpc-status-mapping.md for the
// wire rules they implement.
#include "grpc_codec.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace grpc_green {

namespace {

constexpr char kUpperHex[] = "0123456789ABCDEF";

// Value of an ASCII hex digit (either case), or -1.
inline int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

inline bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

inline bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

// ---------------------------------------------------------------- framing

void AppendFramedMessage(std::string& out, const char* data, size_t len) {
  // Precondition: len fits the 32-bit length prefix (callers enforce their
  // max send size, which is far below 4 GiB).
  const uint32_t n = static_cast<uint32_t>(len);
  const char header[kFrameHeaderSize] = {
      0,  // compressed flag
      static_cast<char>((n >> 24) & 0xFF),
      static_cast<char>((n >> 16) & 0xFF),
      static_cast<char>((n >> 8) & 0xFF),
      static_cast<char>(n & 0xFF),
  };
  out.reserve(out.size() + kFrameHeaderSize + len);
  out.append(header, kFrameHeaderSize);
  if (len > 0) out.append(data, len);
}

namespace {

// Upper bound on what the deframer reserves up front for a message whose
// bytes have not arrived yet. The length prefix is peer-controlled, so a
// large reservation per stream could be claimed by sending 5 bytes; past
// this bound the buffer grows with the data actually received.
constexpr size_t kMaxEagerReserve = 64 * 1024;

}  // namespace

bool Deframer::Feed(const uint8_t* data, size_t len) {
  if (failed()) return false;
  const uint8_t* p = data;
  const uint8_t* const end = data + len;

  while (p < end) {
    if (in_body_) {
      // Continue a message whose body started in an earlier feed.
      const size_t take = std::min(need_, static_cast<size_t>(end - p));
      body_.append(reinterpret_cast<const char*>(p), take);
      p += take;
      need_ -= take;
      if (need_ > 0) break;  // input exhausted
      queued_ += body_.size();
      messages_.emplace_back(std::move(body_));
      body_ = std::string();
      in_body_ = false;
      continue;
    }

    // Collect the 5-byte prefix. When it is wholly in the input and none of
    // it is buffered, read it in place.
    const uint8_t* hdr;
    if (header_fill_ == 0 && static_cast<size_t>(end - p) >= kFrameHeaderSize) {
      hdr = p;
      p += kFrameHeaderSize;
    } else {
      const size_t take = std::min(kFrameHeaderSize - header_fill_, static_cast<size_t>(end - p));
      std::memcpy(header_ + header_fill_, p, take);
      header_fill_ += take;
      p += take;
      if (header_fill_ < kFrameHeaderSize) break;  // input exhausted
      hdr = header_;
    }
    header_fill_ = 0;

    const uint8_t flag = hdr[0];
    const size_t length = (static_cast<size_t>(hdr[1]) << 24) |
                          (static_cast<size_t>(hdr[2]) << 16) | (static_cast<size_t>(hdr[3]) << 8) |
                          static_cast<size_t>(hdr[4]);

    if (flag != 0) {
      error_code_ = kInternal;
      error_ = flag == 1 ? "Compressed message received but compression is not "
                           "enabled"
                         : "invalid message compression flag: " +
                               std::to_string(static_cast<unsigned>(flag));
      break;
    }
    if (length > max_) {
      error_code_ = kResourceExhausted;
      error_ = "Received message larger than max (" + std::to_string(length) + " vs. " +
               std::to_string(max_) + ")";
      break;
    }

    const size_t available = static_cast<size_t>(end - p);
    if (length <= available) {
      // Whole message contiguous in the input: build it in one go.
      messages_.emplace_back(reinterpret_cast<const char*>(p), length);
      queued_ += length;
      p += length;
    } else {
      // Body continues in later feeds.
      body_.clear();
      body_.reserve(std::min(length, kMaxEagerReserve));
      body_.append(reinterpret_cast<const char*>(p), available);
      p = end;
      need_ = length - available;
      in_body_ = true;
    }
  }

  if (failed()) {
    // Drop any partial state; further input is ignored.
    header_fill_ = 0;
    in_body_ = false;
    need_ = 0;
    body_ = std::string();
    return false;
  }
  return true;
}

// ------------------------------------------------------------ grpc-timeout

namespace {

constexpr int64_t kMaxTimeoutValue = 99999999;  // 8 digits

struct TimeoutUnit {
  char symbol;
  int64_t nanos;
};

// Finest first.
constexpr TimeoutUnit kTimeoutUnits[] = {
    {'n', 1},
    {'u', 1000},
    {'m', 1000 * 1000},
    {'S', int64_t{1000} * 1000 * 1000},
    {'M', int64_t{60} * 1000 * 1000 * 1000},
    {'H', int64_t{3600} * 1000 * 1000 * 1000},
};

}  // namespace

std::string EncodeGrpcTimeout(int64_t nanoseconds) {
  if (nanoseconds <= 0) return "1n";
  for (const TimeoutUnit& unit : kTimeoutUnits) {
    // Ceiling division, written so it cannot overflow.
    int64_t value = nanoseconds / unit.nanos;
    if (nanoseconds % unit.nanos != 0) ++value;
    if (value <= kMaxTimeoutValue) {
      return std::to_string(value) + unit.symbol;
    }
  }
  // Unreachable: INT64_MAX ns is about 2.6 million hours, which fits.
  return std::to_string(kMaxTimeoutValue) + 'H';
}

bool ParseGrpcTimeout(std::string_view value, int64_t* nanoseconds) {
  if (value.size() < 2 || value.size() > 9) return false;
  const std::string_view digits = value.substr(0, value.size() - 1);
  int64_t amount = 0;
  for (char c : digits) {
    if (!IsDigit(c)) return false;
    amount = amount * 10 + (c - '0');  // at most 8 digits: no overflow
  }
  const char symbol = value.back();
  for (const TimeoutUnit& unit : kTimeoutUnits) {
    if (unit.symbol != symbol) continue;
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    *nanoseconds = amount > kMax / unit.nanos ? kMax : amount * unit.nanos;
    return true;
  }
  return false;
}

// ------------------------------------------------------------ grpc-message

namespace {

inline bool NeedsPercentEncoding(unsigned char c) { return c < 0x20 || c > 0x7E || c == '%'; }

}  // namespace

std::string PercentEncode(std::string_view in) {
  size_t escaped = 0;
  for (char c : in) {
    if (NeedsPercentEncoding(static_cast<unsigned char>(c))) ++escaped;
  }
  if (escaped == 0) return std::string(in);

  std::string out;
  out.reserve(in.size() + 2 * escaped);
  for (char c : in) {
    const unsigned char b = static_cast<unsigned char>(c);
    if (NeedsPercentEncoding(b)) {
      out.push_back('%');
      out.push_back(kUpperHex[b >> 4]);
      out.push_back(kUpperHex[b & 0x0F]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PercentDecode(std::string_view in) {
  if (in.find('%') == std::string_view::npos) return std::string(in);

  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>((hi << 4) | lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);  // plain byte, or a '%' kept as is
  }
  return out;
}

// --------------------------------------------------------------- metadata

namespace {

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Reverse of kBase64Alphabet: 0..63, or -1 for bytes outside it.
struct Base64ReverseTable {
  int8_t value[256];
  constexpr Base64ReverseTable() : value() {
    for (int i = 0; i < 256; ++i) value[i] = -1;
    for (int i = 0; i < 64; ++i) {
      value[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<int8_t>(i);
    }
  }
};

constexpr Base64ReverseTable kBase64Reverse;

}  // namespace

std::string Base64Encode(std::string_view in) {
  const unsigned char* s = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  std::string out;
  out.reserve((n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1));

  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t{s[i]} << 16) | (uint32_t{s[i + 1]} << 8) | uint32_t{s[i + 2]};
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 6) & 0x3F]);
    out.push_back(kBase64Alphabet[v & 0x3F]);
  }
  const size_t rest = n - i;
  if (rest == 1) {
    const uint32_t v = uint32_t{s[i]} << 16;
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
  } else if (rest == 2) {
    const uint32_t v = (uint32_t{s[i]} << 16) | (uint32_t{s[i + 1]} << 8);
    out.push_back(kBase64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kBase64Alphabet[(v >> 6) & 0x3F]);
  }
  return out;
}

bool Base64Decode(std::string_view in, std::string* out) {
  // Strip padding: allowed only as the last one or two characters of an
  // input whose length is a multiple of 4.
  size_t n = in.size();
  if (n > 0 && in[n - 1] == '=') {
    if (n % 4 != 0) return false;
    --n;
    if (in[n - 1] == '=') --n;
  }
  // A lone trailing character carries only 6 bits: not a whole byte.
  if (n % 4 == 1) return false;

  std::string result;
  result.reserve(n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1));

  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    const int v = kBase64Reverse.value[static_cast<unsigned char>(in[i])];
    if (v < 0) return false;  // includes a '=' not at the very end
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      result.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits (fewer than 8) are the unused low bits of the last
  // character; like most decoders, they are not required to be zero.
  *out = std::move(result);
  return true;
}

bool IsValidMetadataKey(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    const bool ok =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool IsValidMetadataValue(std::string_view value) {
  for (char c : value) {
    const unsigned char b = static_cast<unsigned char>(c);
    if (b < 0x20 || b > 0x7E) return false;
  }
  return true;
}

bool IsBinaryHeader(std::string_view key) { return EndsWith(key, "-bin"); }

bool IsReservedHeader(std::string_view key) {
  if (key.empty()) return false;
  if (key[0] == ':') return true;  // HTTP/2 pseudo headers
  if (StartsWith(key, "grpc-")) return key != "grpc-status-details-bin";
  static constexpr std::string_view kReserved[] = {
      // gRPC call definition headers.
      "te", "content-type", "user-agent",
      // Connection-specific headers HTTP/2 forbids (RFC 9113 8.2.2), plus
      // ones the transport manages.
      "content-length", "host", "connection", "transfer-encoding", "upgrade", "keep-alive",
      "proxy-connection"};
  for (std::string_view r : kReserved) {
    if (key == r) return true;
  }
  return false;
}

// ----------------------------------------------------------- status maps

StatusCode StatusFromHttpStatus(int http_status) {
  switch (http_status) {
    case 400:
      return kInternal;
    case 401:
      return kUnauthenticated;
    case 403:
      return kPermissionDenied;
    case 404:
      return kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return kUnavailable;
    default:
      return kUnknown;
  }
}

StatusCode StatusFromHttp2Error(uint32_t error_code) {
  switch (error_code) {
    case 0x7:  // REFUSED_STREAM: nothing was processed, safe to retry
      return kUnavailable;
    case 0x8:  // CANCEL
      return kCancelled;
    case 0xb:  // ENHANCE_YOUR_CALM
      return kResourceExhausted;
    case 0xc:  // INADEQUATE_SECURITY
      return kPermissionDenied;
    default:
      // NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR,
      // SETTINGS_TIMEOUT, FRAME_SIZE_ERROR, COMPRESSION_ERROR,
      // CONNECT_ERROR and anything unknown.
      return kInternal;
  }
}

bool ParseGrpcStatus(std::string_view value, int* code) {
  if (value.empty()) return false;
  int64_t v = 0;
  for (char c : value) {
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
    if (v > std::numeric_limits<int32_t>::max()) return false;
  }
  *code = static_cast<int>(v);
  return true;
}

}  // namespace grpc_green
