#ifndef METATRAIN_TESTS_FUZZ_FUZZ_UTIL_H_
#define METATRAIN_TESTS_FUZZ_FUZZ_UTIL_H_

// Shared by the fuzz targets (tests/fuzz/*_fuzzer.cc): reading a message sequence out of
// the fuzzer's bytes, and failing loudly when a property the product relies on breaks.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/delimited_message_util.h"

namespace metatrain::fuzz {

// Protobuf logs every string field with invalid UTF-8 it parses; fuzzed bytes are full of
// them, and the log would drown the fuzzer's output. Parsing still fails as it should.
inline const bool kProtobufLogSilenced = (google::protobuf::SetLogHandler(nullptr), true);

// A broken property is a finding like a crash: print it and abort, so that libFuzzer keeps
// the input and the replay test fails.
#define FUZZ_CHECK(condition, message)                                                           \
  do {                                                                                           \
    if (!(condition)) {                                                                          \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #condition, \
                   std::string(message).c_str());                                                \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

// The messages of a stream as gRPC would deliver them one by one: each is a varint length
// and that many bytes (protobuf's delimited format). Stops at the first message that does
// not parse, or after `max_messages`.
template <typename Message>
std::vector<Message> ParseDelimited(const uint8_t* data, size_t size, size_t max_messages) {
  std::vector<Message> out;
  google::protobuf::io::CodedInputStream in(data, static_cast<int>(size));
  while (out.size() < max_messages) {
    Message message;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromCodedStream(&message, &in, &clean_eof)) break;
    out.push_back(std::move(message));
  }
  return out;
}

}  // namespace metatrain::fuzz

#endif  // METATRAIN_TESTS_FUZZ_FUZZ_UTIL_H_
