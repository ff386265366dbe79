// GoogleTest suite for csrc/grpc_codec.{hpp,cpp}.
#include "grpc_codec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace grpc_green {
namespace {

using std::string;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kNs = 1;
constexpr int64_t kUs = 1000;
constexpr int64_t kMs = 1000 * kUs;
constexpr int64_t kSec = 1000 * kMs;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;

// --------------------------------------------------------- MessageQueue

TEST(MessageQueue, FifoAcrossCompactionAndReuse) {
  MessageQueue q;
  EXPECT_TRUE(q.empty());
  int next_in = 0, next_out = 0;
  // Push ahead of the reader in uneven steps, so the taken prefix is
  // dropped several times while messages are still queued.
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 7; ++i) q.emplace_back(std::to_string(next_in++));
    for (int i = 0; i < 5; ++i) {
      ASSERT_EQ(q.front(), std::to_string(next_out));
      ASSERT_EQ(q.pop_front(), std::to_string(next_out++));
    }
    ASSERT_EQ(q.size(), static_cast<size_t>(next_in - next_out));
    ASSERT_EQ(q[q.size() - 1], q.back());
    std::vector<string> rest(q.begin(), q.end());
    ASSERT_EQ(rest.size(), q.size());
    for (size_t i = 0; i < rest.size(); ++i) ASSERT_EQ(rest[i], std::to_string(next_out + i));
  }
  while (!q.empty()) ASSERT_EQ(q.pop_front(), std::to_string(next_out++));
  EXPECT_EQ(next_out, next_in);
  q.emplace_back("again");
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.pop_front(), "again");
  EXPECT_TRUE(q.empty());
}

// ------------------------------------------------------------- helpers

string Frame(const string& payload) {
  string out;
  AppendFramedMessage(out, payload.data(), payload.size());
  return out;
}

string Header(uint8_t flag, uint32_t len) {
  string h(kFrameHeaderSize, '\0');
  h[0] = static_cast<char>(flag);
  h[1] = static_cast<char>((len >> 24) & 0xFF);
  h[2] = static_cast<char>((len >> 16) & 0xFF);
  h[3] = static_cast<char>((len >> 8) & 0xFF);
  h[4] = static_cast<char>(len & 0xFF);
  return h;
}

bool Feed(Deframer& d, const string& bytes) {
  return d.Feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::vector<string> Drain(Deframer& d) {
  std::vector<string> out(d.messages().begin(), d.messages().end());
  d.Clear();
  return out;
}

string AllBytes() {
  string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

string RandomBytes(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int> byte(0, 255);
  string s(n, '\0');
  for (char& c : s) c = static_cast<char>(byte(rng));
  return s;
}

// ------------------------------------------------------------- framing

TEST(Framing, PrefixIsFlagZeroAndBigEndianLength) {
  EXPECT_EQ(Frame("abc"), string("\x00\x00\x00\x00\x03"
                                 "abc",
                                 8));
  EXPECT_EQ(Frame(""), string(5, '\0'));

  const string big(0x010203, 'x');
  const string framed = Frame(big);
  ASSERT_EQ(framed.size(), 5u + 0x010203);
  EXPECT_EQ(framed.substr(0, 5), string("\x00\x00\x01\x02\x03", 5));
  EXPECT_EQ(framed.substr(5), big);
}

TEST(Framing, AppendsToExistingContent) {
  string out = "prefix";
  AppendFramedMessage(out, "hi", 2);
  AppendFramedMessage(out, nullptr, 0);
  EXPECT_EQ(out, string("prefix\x00\x00\x00\x00\x02hi\x00\x00\x00\x00\x00", 18));
}

TEST(Framing, RoundTripThroughDeframer) {
  const std::vector<string> msgs = {
      "hello", "", string("a\0b\0", 4), AllBytes(), string(100000, 'z'), "x"};
  string stream;
  for (const string& m : msgs) AppendFramedMessage(stream, m.data(), m.size());

  Deframer d(1 << 20);
  EXPECT_TRUE(Feed(d, stream));
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(d.error_code(), kOk);
  EXPECT_FALSE(d.has_partial());
  EXPECT_EQ(Drain(d), msgs);
}

// ------------------------------------------------------------ deframer

TEST(Deframer, InitialState) {
  Deframer d(123);
  EXPECT_EQ(d.max_message_size(), 123u);
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(d.error_code(), kOk);
  EXPECT_EQ(d.error(), "");
  EXPECT_FALSE(d.has_partial());
  EXPECT_TRUE(d.messages().empty());
}

TEST(Deframer, EmptyFeedIsHarmless) {
  Deframer d(100);
  EXPECT_TRUE(d.Feed(nullptr, 0));
  EXPECT_TRUE(d.messages().empty());
  EXPECT_FALSE(d.has_partial());
}

TEST(Deframer, OneByteAtATime) {
  const std::vector<string> msgs = {"first", "", "third message", "4"};
  string stream;
  for (const string& m : msgs) stream += Frame(m);

  Deframer d(1000);
  std::vector<string> got;
  // Offsets at which a message boundary ends (stream fully consumed).
  std::vector<size_t> boundaries;
  size_t acc = 0;
  for (const string& m : msgs) {
    acc += 5 + m.size();
    boundaries.push_back(acc);
  }
  for (size_t i = 0; i < stream.size(); ++i) {
    ASSERT_TRUE(d.Feed(reinterpret_cast<const uint8_t*>(&stream[i]), 1));
    for (string& m : Drain(d)) got.push_back(std::move(m));
    const bool at_boundary =
        std::find(boundaries.begin(), boundaries.end(), i + 1) != boundaries.end();
    EXPECT_EQ(d.has_partial(), !at_boundary) << "after byte " << i;
  }
  EXPECT_EQ(got, msgs);
  EXPECT_FALSE(d.has_partial());
}

TEST(Deframer, HeaderSplitAtEveryPoint) {
  const string msg = "payload-bytes";
  const string framed = Frame(msg) + Frame("second");
  for (size_t split = 1; split < framed.size(); ++split) {
    Deframer d(100);
    ASSERT_TRUE(Feed(d, framed.substr(0, split)));
    // Only a split exactly between the two frames leaves nothing partial.
    const bool at_boundary = split == kFrameHeaderSize + msg.size();
    EXPECT_EQ(d.has_partial(), !at_boundary) << "split " << split;
    const bool first_done = split >= kFrameHeaderSize + msg.size();
    EXPECT_EQ(d.messages().size(), first_done ? 1u : 0u) << "split " << split;
    ASSERT_TRUE(Feed(d, framed.substr(split)));
    EXPECT_FALSE(d.has_partial());
    EXPECT_EQ(Drain(d), (std::vector<string>{msg, "second"})) << "split " << split;
  }
}

TEST(Deframer, HeaderSplitIntoThreeFeeds) {
  const string framed = Frame("abcdef");
  Deframer d(100);
  ASSERT_TRUE(Feed(d, framed.substr(0, 2)));
  ASSERT_TRUE(Feed(d, framed.substr(2, 2)));
  EXPECT_TRUE(d.messages().empty());
  EXPECT_TRUE(d.has_partial());
  ASSERT_TRUE(Feed(d, framed.substr(4, 1)));  // header complete, body not
  EXPECT_TRUE(d.messages().empty());
  EXPECT_TRUE(d.has_partial());
  ASSERT_TRUE(Feed(d, framed.substr(5)));
  EXPECT_EQ(Drain(d), std::vector<string>{"abcdef"});
  EXPECT_FALSE(d.has_partial());
}

TEST(Deframer, BodyTailPlusNextMessagesInOneFeed) {
  const string a(1000, 'a'), b = "bb", c(300, 'c');
  const string stream = Frame(a) + Frame(b) + Frame(c);
  Deframer d(10000);
  // Part of a's body, then the rest of a + all of b + part of c's header.
  const size_t cut1 = 5 + 400;
  const size_t cut2 = 5 + a.size() + 5 + b.size() + 3;
  ASSERT_TRUE(Feed(d, stream.substr(0, cut1)));
  EXPECT_TRUE(d.messages().empty());
  ASSERT_TRUE(Feed(d, stream.substr(cut1, cut2 - cut1)));
  EXPECT_EQ(Drain(d), (std::vector<string>{a, b}));
  EXPECT_TRUE(d.has_partial());
  ASSERT_TRUE(Feed(d, stream.substr(cut2)));
  EXPECT_EQ(Drain(d), std::vector<string>{c});
  EXPECT_FALSE(d.has_partial());
}

TEST(Deframer, ManyMessagesCoalesced) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> len(0, 64);
  std::vector<string> msgs;
  string stream;
  for (int i = 0; i < 2000; ++i) {
    msgs.push_back(RandomBytes(rng, static_cast<size_t>(len(rng))));
    AppendFramedMessage(stream, msgs.back().data(), msgs.back().size());
  }
  Deframer d(64);
  ASSERT_TRUE(Feed(d, stream));
  EXPECT_FALSE(d.has_partial());
  EXPECT_EQ(Drain(d), msgs);
}

TEST(Deframer, RandomSplits) {
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    std::uniform_int_distribution<int> count(1, 20), len(0, 3000);
    std::vector<string> msgs;
    string stream;
    const int n = count(rng);
    for (int i = 0; i < n; ++i) {
      msgs.push_back(RandomBytes(rng, static_cast<size_t>(len(rng))));
      stream += Frame(msgs.back());
    }
    Deframer d(3000);
    std::vector<string> got;
    size_t pos = 0;
    std::uniform_int_distribution<int> chunk(0, 700);
    while (pos < stream.size()) {
      const size_t take = std::min(stream.size() - pos, static_cast<size_t>(chunk(rng)));
      ASSERT_TRUE(Feed(d, stream.substr(pos, take)));
      pos += take;
      for (string& m : Drain(d)) got.push_back(std::move(m));
    }
    EXPECT_FALSE(d.has_partial());
    EXPECT_EQ(got, msgs) << "round " << round;
  }
}

TEST(Deframer, MessagesAccumulateUntilConsumerTakesThem) {
  Deframer d(100);
  ASSERT_TRUE(Feed(d, Frame("one")));
  ASSERT_TRUE(Feed(d, Frame("two")));
  ASSERT_EQ(d.messages().size(), 2u);
  EXPECT_EQ(d.messages().front(), "one");
  d.Pop();
  ASSERT_TRUE(Feed(d, Frame("three")));
  EXPECT_EQ(Drain(d), (std::vector<string>{"two", "three"}));
}

TEST(Deframer, ZeroLengthMessages) {
  Deframer d(0);  // even max 0 admits empty messages
  ASSERT_TRUE(Feed(d, Header(0, 0)));
  EXPECT_FALSE(d.has_partial());
  ASSERT_TRUE(Feed(d, Header(0, 0) + Header(0, 0) + Header(0, 0)));
  EXPECT_EQ(Drain(d), std::vector<string>(4, ""));
  EXPECT_FALSE(d.failed());

  // A zero-length header split across feeds.
  ASSERT_TRUE(Feed(d, string(3, '\0')));
  EXPECT_TRUE(d.has_partial());
  EXPECT_TRUE(d.messages().empty());
  ASSERT_TRUE(Feed(d, string(2, '\0')));
  EXPECT_FALSE(d.has_partial());
  EXPECT_EQ(Drain(d), std::vector<string>{""});
}

TEST(Deframer, MessageExactlyAtMax) {
  const string msg(4096, 'm');
  Deframer d(4096);
  ASSERT_TRUE(Feed(d, Frame(msg)));
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(Drain(d), std::vector<string>{msg});

  // Same, arriving in pieces.
  const string framed = Frame(msg);
  ASSERT_TRUE(Feed(d, framed.substr(0, 7)));
  ASSERT_TRUE(Feed(d, framed.substr(7)));
  EXPECT_EQ(Drain(d), std::vector<string>{msg});
}

TEST(Deframer, OversizedLengthPrefix) {
  Deframer d(10);
  // A valid message first; it stays delivered.
  const string stream = Frame("ok") + Frame(string(11, 'x')) + Frame("later");
  EXPECT_FALSE(Feed(d, stream));
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.error_code(), kResourceExhausted);
  EXPECT_EQ(d.error(), "Received message larger than max (11 vs. 10)");
  EXPECT_EQ(Drain(d), std::vector<string>{"ok"});
  EXPECT_FALSE(d.has_partial());

  // Further input is ignored and the error sticks.
  EXPECT_FALSE(Feed(d, Frame("more")));
  EXPECT_TRUE(d.messages().empty());
  EXPECT_EQ(d.error_code(), kResourceExhausted);
  EXPECT_EQ(d.error(), "Received message larger than max (11 vs. 10)");
}

TEST(Deframer, OversizedDetectedFromHeaderAlone) {
  // The error fires as soon as the prefix is complete, before any body.
  Deframer d(4 * 1024 * 1024);
  const string h = Header(0, 0xFFFFFFFFu);
  ASSERT_TRUE(Feed(d, h.substr(0, 4)));
  EXPECT_FALSE(d.failed());
  EXPECT_FALSE(Feed(d, h.substr(4)));
  EXPECT_EQ(d.error_code(), kResourceExhausted);
  EXPECT_EQ(d.error(), "Received message larger than max (4294967295 vs. 4194304)");
  EXPECT_FALSE(d.has_partial());
}

TEST(Deframer, MaxZeroRejectsOneByte) {
  Deframer d(0);
  EXPECT_FALSE(Feed(d, Frame("x")));
  EXPECT_EQ(d.error_code(), kResourceExhausted);
  EXPECT_EQ(d.error(), "Received message larger than max (1 vs. 0)");
}

TEST(Deframer, CompressedFlagIsRejected) {
  Deframer d(100);
  EXPECT_FALSE(Feed(d, Header(1, 3) + "abc"));
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.error_code(), kInternal);
  EXPECT_EQ(d.error(), "Compressed message received but compression is not enabled");
  EXPECT_TRUE(d.messages().empty());
  EXPECT_FALSE(Feed(d, Frame("abc")));
  EXPECT_TRUE(d.messages().empty());
}

TEST(Deframer, InvalidFlagValues) {
  for (int flag : {2, 3, 0x80, 0xFF}) {
    Deframer d(100);
    EXPECT_FALSE(Feed(d, Header(static_cast<uint8_t>(flag), 0))) << "flag " << flag;
    EXPECT_EQ(d.error_code(), kInternal);
    EXPECT_NE(d.error().find("invalid message compression flag"), string::npos) << d.error();
    EXPECT_TRUE(d.messages().empty());
  }
}

TEST(Deframer, FlagCheckedEvenWhenHeaderArrivesInPieces) {
  Deframer d(100);
  ASSERT_TRUE(Feed(d, Frame("good")));
  const string bad = Header(1, 2) + "zz";
  ASSERT_TRUE(Feed(d, bad.substr(0, 1)));
  EXPECT_FALSE(d.failed());
  EXPECT_FALSE(Feed(d, bad.substr(1)));
  EXPECT_EQ(d.error_code(), kInternal);
  EXPECT_EQ(Drain(d), std::vector<string>{"good"});
}

TEST(Deframer, HasPartialTracksEveryState) {
  Deframer d(100);
  EXPECT_FALSE(d.has_partial());
  ASSERT_TRUE(Feed(d, Header(0, 4).substr(0, 1)));
  EXPECT_TRUE(d.has_partial());  // partial header
  ASSERT_TRUE(Feed(d, Header(0, 4).substr(1)));
  EXPECT_TRUE(d.has_partial());  // header done, body pending
  ASSERT_TRUE(Feed(d, "ab"));
  EXPECT_TRUE(d.has_partial());  // partial body
  ASSERT_TRUE(Feed(d, "cd"));
  EXPECT_FALSE(d.has_partial());  // complete
  EXPECT_EQ(Drain(d), std::vector<string>{"abcd"});
}

// --------------------------------------------------------- grpc-timeout

TEST(GrpcTimeoutEncode, NonPositiveIsOneNanosecond) {
  EXPECT_EQ(EncodeGrpcTimeout(0), "1n");
  EXPECT_EQ(EncodeGrpcTimeout(-1), "1n");
  EXPECT_EQ(EncodeGrpcTimeout(-5 * kSec), "1n");
  EXPECT_EQ(EncodeGrpcTimeout(std::numeric_limits<int64_t>::min()), "1n");
}

TEST(GrpcTimeoutEncode, ChoosesFinestUnitThatFits) {
  EXPECT_EQ(EncodeGrpcTimeout(1), "1n");
  EXPECT_EQ(EncodeGrpcTimeout(12345), "12345n");
  EXPECT_EQ(EncodeGrpcTimeout(99999999), "99999999n");
  EXPECT_EQ(EncodeGrpcTimeout(100000000), "100000u");
  EXPECT_EQ(EncodeGrpcTimeout(kSec), "1000000u");
  EXPECT_EQ(EncodeGrpcTimeout(99999999 * kUs), "99999999u");
  EXPECT_EQ(EncodeGrpcTimeout(100000000 * kUs), "100000m");
  EXPECT_EQ(EncodeGrpcTimeout(kHour), "3600000m");
  EXPECT_EQ(EncodeGrpcTimeout(99999999 * kMs), "99999999m");
  EXPECT_EQ(EncodeGrpcTimeout(100000000 * kMs), "100000S");
  EXPECT_EQ(EncodeGrpcTimeout(99999999 * kSec), "99999999S");
  EXPECT_EQ(EncodeGrpcTimeout(100000000 * kSec), "1666667M");
  EXPECT_EQ(EncodeGrpcTimeout(99999960 * kMin), "99999960M");
  EXPECT_EQ(EncodeGrpcTimeout(100000020 * kMin), "1666667H");
}

TEST(GrpcTimeoutEncode, RoundsUpNeverDown) {
  EXPECT_EQ(EncodeGrpcTimeout(100000001), "100001u");
  EXPECT_EQ(EncodeGrpcTimeout(1500000001), "1500001u");
  EXPECT_EQ(EncodeGrpcTimeout(99999999 * kUs + 1), "100000m");
  EXPECT_EQ(EncodeGrpcTimeout(100000000 * kMs + 1), "100001S");
  EXPECT_EQ(EncodeGrpcTimeout(100000000 * kSec + 1), "1666667M");
}

TEST(GrpcTimeoutEncode, HugeValues) {
  // INT64_MAX ns = 2562047.79 hours.
  EXPECT_EQ(EncodeGrpcTimeout(kInt64Max), "2562048H");
  EXPECT_EQ(EncodeGrpcTimeout(kInt64Max - 1), "2562048H");
  EXPECT_EQ(EncodeGrpcTimeout(2562047 * kHour), "2562047H");
}

TEST(GrpcTimeoutEncode, PropertiesOnManyValues) {
  std::mt19937_64 rng(7);
  std::vector<int64_t> values = {1, 999, 1000, 1001, kSec - 1, kSec + 1, kInt64Max};
  for (int i = 0; i < 5000; ++i) {
    // Log-uniform-ish spread over the whole int64 range.
    const int shift = static_cast<int>(rng() % 63);
    values.push_back(std::max<int64_t>(1, static_cast<int64_t>(rng() >> (1 + shift))));
  }
  auto unit_nanos = [](char u) -> int64_t {
    switch (u) {
      case 'n':
        return kNs;
      case 'u':
        return kUs;
      case 'm':
        return kMs;
      case 'S':
        return kSec;
      case 'M':
        return kMin;
      case 'H':
        return kHour;
    }
    return 0;
  };
  const string kUnitOrder = "numSMH";
  for (int64_t v : values) {
    const string enc = EncodeGrpcTimeout(v);
    ASSERT_GE(enc.size(), 2u);
    ASSERT_LE(enc.size(), 9u) << enc;
    int64_t parsed = -1;
    ASSERT_TRUE(ParseGrpcTimeout(enc, &parsed)) << enc;
    EXPECT_GE(parsed, v) << enc;  // never shorter than asked
    const char u = enc.back();
    const int64_t unit = unit_nanos(u);
    ASSERT_GT(unit, 0) << enc;
    // Rounded up by less than one unit (unless saturated at INT64_MAX).
    if (parsed != kInt64Max) {
      EXPECT_EQ(parsed, std::stoll(enc.substr(0, enc.size() - 1)) * unit);
    }
    EXPECT_LT(parsed - v, unit) << v << " -> " << enc;
    // The next finer unit would have needed more than 8 digits.
    const size_t idx = kUnitOrder.find(u);
    if (idx > 0) {
      const int64_t finer = unit_nanos(kUnitOrder[idx - 1]);
      const int64_t finer_value = v / finer + (v % finer != 0 ? 1 : 0);
      EXPECT_GT(finer_value, 99999999) << v << " -> " << enc;
    }
  }
}

TEST(GrpcTimeoutParse, AllUnits) {
  int64_t ns = -1;
  ASSERT_TRUE(ParseGrpcTimeout("7n", &ns));
  EXPECT_EQ(ns, 7 * kNs);
  ASSERT_TRUE(ParseGrpcTimeout("7u", &ns));
  EXPECT_EQ(ns, 7 * kUs);
  ASSERT_TRUE(ParseGrpcTimeout("7m", &ns));
  EXPECT_EQ(ns, 7 * kMs);
  ASSERT_TRUE(ParseGrpcTimeout("7S", &ns));
  EXPECT_EQ(ns, 7 * kSec);
  ASSERT_TRUE(ParseGrpcTimeout("7M", &ns));
  EXPECT_EQ(ns, 7 * kMin);
  ASSERT_TRUE(ParseGrpcTimeout("7H", &ns));
  EXPECT_EQ(ns, 7 * kHour);
}

TEST(GrpcTimeoutParse, DigitCounts) {
  int64_t ns = -1;
  ASSERT_TRUE(ParseGrpcTimeout("99999999n", &ns));
  EXPECT_EQ(ns, 99999999);
  ASSERT_TRUE(ParseGrpcTimeout("00000001S", &ns));  // leading zeros, 8 digits
  EXPECT_EQ(ns, kSec);
  ASSERT_TRUE(ParseGrpcTimeout("0m", &ns));  // already expired, still valid
  EXPECT_EQ(ns, 0);
  ASSERT_TRUE(ParseGrpcTimeout("99999999M", &ns));
  EXPECT_EQ(ns, 99999999 * kMin);  // fits int64 exactly
}

TEST(GrpcTimeoutParse, SaturatesInsteadOfOverflowing) {
  int64_t ns = -1;
  ASSERT_TRUE(ParseGrpcTimeout("99999999H", &ns));
  EXPECT_EQ(ns, kInt64Max);
  ASSERT_TRUE(ParseGrpcTimeout("2562048H", &ns));  // just past INT64_MAX
  EXPECT_EQ(ns, kInt64Max);
  ASSERT_TRUE(ParseGrpcTimeout("2562047H", &ns));  // just below
  EXPECT_EQ(ns, 2562047 * kHour);
}

TEST(GrpcTimeoutParse, Malformed) {
  const char* bad[] = {"",   "n",   "S",          "1",          "123",   "1x",   "1s",  "1h",
                       "1U", "1N",  "-1S",        "+1S",        " 1S",   "1S ",  "1 S", "1.5S",
                       "S1", "1SS", "123456789S", "999999999n", "0x10S", "1e3m", "１S"};
  for (const char* v : bad) {
    int64_t ns = 12345;
    EXPECT_FALSE(ParseGrpcTimeout(v, &ns)) << "'" << v << "'";
    EXPECT_EQ(ns, 12345) << "output touched for '" << v << "'";
  }
  int64_t ns = 12345;
  EXPECT_FALSE(ParseGrpcTimeout(std::string_view("1\0S", 3), &ns));
  EXPECT_FALSE(ParseGrpcTimeout(std::string_view("1S\0", 3), &ns));
  EXPECT_EQ(ns, 12345);
}

TEST(GrpcTimeout, RoundTripOfEncodedForms) {
  for (const char* v :
       {"1n", "99999999n", "100000u", "3600000m", "100000S", "1666667M", "2562048H"}) {
    int64_t ns = 0;
    ASSERT_TRUE(ParseGrpcTimeout(v, &ns)) << v;
    if (ns != kInt64Max) {
      EXPECT_EQ(EncodeGrpcTimeout(ns), v);
    }
  }
  // Exact multiples come back unchanged.
  for (int64_t v : {int64_t{1}, 5 * kUs, 250 * kMs, 30 * kSec, 90 * kMin, kHour, 1000 * kHour}) {
    int64_t ns = 0;
    ASSERT_TRUE(ParseGrpcTimeout(EncodeGrpcTimeout(v), &ns));
    EXPECT_EQ(ns, v);
  }
}

// --------------------------------------------------------- grpc-message

TEST(PercentEncode, PrintableAsciiUntouched) {
  string printable;
  for (int c = 0x20; c <= 0x7E; ++c) {
    if (c != '%') printable.push_back(static_cast<char>(c));
  }
  EXPECT_EQ(PercentEncode(printable), printable);
  EXPECT_EQ(PercentEncode(""), "");
  EXPECT_EQ(PercentEncode("Hello, world! (ok) ~"), "Hello, world! (ok) ~");
}

TEST(PercentEncode, EscapesPercentControlAndHighBytes) {
  EXPECT_EQ(PercentEncode("%"), "%25");
  EXPECT_EQ(PercentEncode("100% done"), "100%25 done");
  EXPECT_EQ(PercentEncode("a\tb\nc\rd"), "a%09b%0Ac%0Dd");
  EXPECT_EQ(PercentEncode(string("\0", 1)), "%00");
  EXPECT_EQ(PercentEncode("\x1f\x7f\x80\xff"), "%1F%7F%80%FF");
  EXPECT_EQ(PercentEncode("\xc3\xa9"), "%C3%A9");  // é, uppercase hex
}

TEST(PercentEncode, Utf8RoundTrip) {
  const string bmp = "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac";  // café 日本
  EXPECT_EQ(PercentEncode(bmp), "caf%C3%A9 %E6%97%A5%E6%9C%AC");
  EXPECT_EQ(PercentDecode(PercentEncode(bmp)), bmp);

  const string astral = "smile \xf0\x9f\x98\x80!";  // U+1F600
  EXPECT_EQ(PercentEncode(astral), "smile %F0%9F%98%80!");
  EXPECT_EQ(PercentDecode(PercentEncode(astral)), astral);
}

TEST(PercentEncode, EveryByteRoundTrips) {
  const string all = AllBytes();
  const string enc = PercentEncode(all);
  for (char c : enc) {
    const unsigned char b = static_cast<unsigned char>(c);
    EXPECT_TRUE(b >= 0x20 && b <= 0x7E);
  }
  EXPECT_EQ(PercentDecode(enc), all);
}

TEST(PercentDecode, ValidSequences) {
  EXPECT_EQ(PercentDecode("%25"), "%");
  EXPECT_EQ(PercentDecode("a%20b"), "a b");
  EXPECT_EQ(PercentDecode("%c3%a9"), "\xc3\xa9");  // lowercase accepted
  EXPECT_EQ(PercentDecode("%C3%A9"), "\xc3\xa9");
  EXPECT_EQ(PercentDecode("%00"), string("\0", 1));
  EXPECT_EQ(PercentDecode("no escapes"), "no escapes");
  EXPECT_EQ(PercentDecode(""), "");
}

TEST(PercentDecode, InvalidSequencesKeptAsIs) {
  EXPECT_EQ(PercentDecode("%"), "%");
  EXPECT_EQ(PercentDecode("%4"), "%4");
  EXPECT_EQ(PercentDecode("%ZZ"), "%ZZ");
  EXPECT_EQ(PercentDecode("%4G"), "%4G");
  EXPECT_EQ(PercentDecode("%G4"), "%G4");
  EXPECT_EQ(PercentDecode("abc%"), "abc%");
  EXPECT_EQ(PercentDecode("abc%4"), "abc%4");
  EXPECT_EQ(PercentDecode("%%41"), "%A");
  EXPECT_EQ(PercentDecode("%%"), "%%");
  EXPECT_EQ(PercentDecode("%2"), "%2");
  EXPECT_EQ(PercentDecode("50%-off %41"), "50%-off A");
}

// ------------------------------------------------------------- base64

TEST(Base64, EncodeRfc4648VectorsUnpadded) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg");
  EXPECT_EQ(Base64Encode("fo"), "Zm8");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("\xfb\xff"), "+/8");  // standard, not URL-safe
  EXPECT_EQ(Base64Encode(string("\0\0\0", 3)), "AAAA");
}

TEST(Base64, DecodePaddedAndUnpadded) {
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"", ""},
      {"Zg==", "f"},
      {"Zg", "f"},
      {"Zm8=", "fo"},
      {"Zm8", "fo"},
      {"Zm9v", "foo"},
      {"Zm9vYg==", "foob"},
      {"Zm9vYg", "foob"},
      {"Zm9vYmE=", "fooba"},
      {"Zm9vYmE", "fooba"},
      {"Zm9vYmFy", "foobar"},
      {"+/8", "\xfb\xff"},
  };
  for (const Case& c : cases) {
    string out = "junk";
    ASSERT_TRUE(Base64Decode(c.in, &out)) << c.in;
    EXPECT_EQ(out, c.out) << c.in;
  }
}

TEST(Base64, RoundTripAllRemainders) {
  std::mt19937 rng(99);
  for (size_t n = 0; n <= 64; ++n) {
    const string data = RandomBytes(rng, n);
    const string enc = Base64Encode(data);
    EXPECT_EQ(enc.size(), (n * 4 + 2) / 3) << n;
    EXPECT_EQ(enc.find('='), string::npos);
    string dec;
    ASSERT_TRUE(Base64Decode(enc, &dec)) << n;
    EXPECT_EQ(dec, data);
    // Padded form decodes the same.
    string padded = enc;
    while (padded.size() % 4 != 0) padded.push_back('=');
    ASSERT_TRUE(Base64Decode(padded, &dec)) << padded;
    EXPECT_EQ(dec, data);
  }
  string dec;
  ASSERT_TRUE(Base64Decode(Base64Encode(AllBytes()), &dec));
  EXPECT_EQ(dec, AllBytes());
}

TEST(Base64, RejectsInvalidInput) {
  const char* bad[] = {
      "Z",         // 1 char: not a whole byte
      "Zm9vY",     // 4k+1 chars
      "Zm9vY===",  // 3 padding chars
      "Zg=",       // padded but length not a multiple of 4
      "Zg===",     // too much padding
      "=",        "==",       "====",   "Z===",
      "Z=g=",                  // padding in the middle
      "=Zg=",     "Zg==Zg==",  // padding before more data
      "Zm9v!",    "Zm 9v",    "Zm9v\n", "Zm9v\r\n",
      "Zm-_",  // URL-safe alphabet is not standard base64
      "Zm9\xff",
  };
  for (const char* v : bad) {
    string out = "untouched";
    EXPECT_FALSE(Base64Decode(v, &out)) << "'" << v << "'";
    EXPECT_EQ(out, "untouched") << v;
  }
  string out = "untouched";
  EXPECT_FALSE(Base64Decode(std::string_view("Zm\0v", 4), &out));
  EXPECT_EQ(out, "untouched");
}

// ------------------------------------------------------------ metadata

TEST(Metadata, ValidKeys) {
  for (const char* k : {"a", "0", "x-custom-key", "key_1.2", "-", "_.-",
                        "abcdefghijklmnopqrstuvwxyz0123456789", "trace-bin"}) {
    EXPECT_TRUE(IsValidMetadataKey(k)) << k;
  }
}

TEST(Metadata, InvalidKeys) {
  for (const char* k : {"", "Upper", "X-Custom", "a b", ":path", ":", "key/", "key:", "k\xc3\xa9",
                        "tab\t", "a+b", "a,b", "a=b"}) {
    EXPECT_FALSE(IsValidMetadataKey(k)) << k;
  }
  EXPECT_FALSE(IsValidMetadataKey(std::string_view("a\0b", 3)));
}

TEST(Metadata, Values) {
  string printable;
  for (int c = 0x20; c <= 0x7E; ++c) printable.push_back(static_cast<char>(c));
  EXPECT_TRUE(IsValidMetadataValue(printable));
  EXPECT_TRUE(IsValidMetadataValue(""));
  EXPECT_TRUE(IsValidMetadataValue("Bearer abc.def"));
  for (const char* v : {"a\tb", "line\n", "cr\r", "\x7f", "\x80", "\xff", "caf\xc3\xa9", "\x1f"}) {
    EXPECT_FALSE(IsValidMetadataValue(v)) << v;
  }
  EXPECT_FALSE(IsValidMetadataValue(std::string_view("a\0b", 3)));
}

TEST(Metadata, BinaryHeader) {
  EXPECT_TRUE(IsBinaryHeader("x-bin"));
  EXPECT_TRUE(IsBinaryHeader("grpc-status-details-bin"));
  EXPECT_TRUE(IsBinaryHeader("-bin"));
  EXPECT_FALSE(IsBinaryHeader("bin"));
  EXPECT_FALSE(IsBinaryHeader("x-binary"));
  EXPECT_FALSE(IsBinaryHeader("xbin"));
  EXPECT_FALSE(IsBinaryHeader("x-BIN"));
  EXPECT_FALSE(IsBinaryHeader(""));
}

TEST(Metadata, ReservedHeaders) {
  for (const char* k : {":path",
                        ":method",
                        ":status",
                        ":authority",
                        ":scheme",
                        ":",
                        "te",
                        "content-type",
                        "user-agent",
                        "grpc-status",
                        "grpc-message",
                        "grpc-timeout",
                        "grpc-encoding",
                        "grpc-accept-encoding",
                        "grpc-message-type",
                        "grpc-future-thing",
                        "grpc-",
                        "grpc-foo-bin",
                        "content-length",
                        "host",
                        "connection",
                        "transfer-encoding",
                        "upgrade",
                        "keep-alive",
                        "proxy-connection"}) {
    EXPECT_TRUE(IsReservedHeader(k)) << k;
  }
  for (const char* k : {"grpc-status-details-bin", "authorization", "x-custom", "trace-bin", "grpc",
                        "grpcx-foo", "my-grpc-status", "te2", "tes", "content-typex", "hostname",
                        "content-encoding", "accept", ""}) {
    EXPECT_FALSE(IsReservedHeader(k)) << k;
  }
}

// --------------------------------------------------------- status maps

TEST(StatusMap, HttpStatus) {
  EXPECT_EQ(StatusFromHttpStatus(400), kInternal);
  EXPECT_EQ(StatusFromHttpStatus(401), kUnauthenticated);
  EXPECT_EQ(StatusFromHttpStatus(403), kPermissionDenied);
  EXPECT_EQ(StatusFromHttpStatus(404), kUnimplemented);
  EXPECT_EQ(StatusFromHttpStatus(429), kUnavailable);
  EXPECT_EQ(StatusFromHttpStatus(502), kUnavailable);
  EXPECT_EQ(StatusFromHttpStatus(503), kUnavailable);
  EXPECT_EQ(StatusFromHttpStatus(504), kUnavailable);
  for (int s : {0, -1, 100, 200, 204, 301, 402, 405, 415, 500, 501, 505, 999}) {
    EXPECT_EQ(StatusFromHttpStatus(s), kUnknown) << s;
  }
}

TEST(StatusMap, Http2ErrorCodes) {
  EXPECT_EQ(StatusFromHttp2Error(0x0), kInternal);           // NO_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0x1), kInternal);           // PROTOCOL_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0x2), kInternal);           // INTERNAL_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0x3), kInternal);           // FLOW_CONTROL_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0x4), kInternal);           // SETTINGS_TIMEOUT
  EXPECT_EQ(StatusFromHttp2Error(0x5), kInternal);           // STREAM_CLOSED
  EXPECT_EQ(StatusFromHttp2Error(0x6), kInternal);           // FRAME_SIZE_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0x7), kUnavailable);        // REFUSED_STREAM
  EXPECT_EQ(StatusFromHttp2Error(0x8), kCancelled);          // CANCEL
  EXPECT_EQ(StatusFromHttp2Error(0x9), kInternal);           // COMPRESSION_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0xa), kInternal);           // CONNECT_ERROR
  EXPECT_EQ(StatusFromHttp2Error(0xb), kResourceExhausted);  // ENHANCE_YOUR_CALM
  EXPECT_EQ(StatusFromHttp2Error(0xc), kPermissionDenied);   // INADEQUATE_SECURITY
  EXPECT_EQ(StatusFromHttp2Error(0xd), kInternal);           // HTTP_1_1_REQUIRED
  EXPECT_EQ(StatusFromHttp2Error(0x1234), kInternal);
  EXPECT_EQ(StatusFromHttp2Error(0xFFFFFFFFu), kInternal);
}

TEST(GrpcStatus, ParsesValidValues) {
  struct Case {
    const char* in;
    int out;
  } cases[] = {{"0", 0},   {"1", 1},
               {"13", 13}, {"16", 16},
               {"17", 17}, {"2147483647", 2147483647},
               {"007", 7}, {"0000000000000000000001", 1}};
  for (const Case& c : cases) {
    int code = -1;
    ASSERT_TRUE(ParseGrpcStatus(c.in, &code)) << c.in;
    EXPECT_EQ(code, c.out) << c.in;
  }
}

TEST(GrpcStatus, RejectsInvalidValues) {
  for (const char* v : {"", "-1", "+1", " 1", "1 ", "1a", "a", "0x1", "1.0", "2147483648",
                        "4294967296", "99999999999999999999", "18446744073709551617"}) {
    int code = 42;
    EXPECT_FALSE(ParseGrpcStatus(v, &code)) << "'" << v << "'";
    EXPECT_EQ(code, 42) << v;
  }
  int code = 42;
  EXPECT_FALSE(ParseGrpcStatus(std::string_view("1\0", 2), &code));
  EXPECT_EQ(code, 42);
}

}  // namespace
}  // namespace grpc_green
