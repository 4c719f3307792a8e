// Fuzz target: a job spec as a user submits it (metactl submit, SubmitJob), in JSON or text
// format, through ParseJobSpec and NormalizeJobSpec. Properties checked beyond "no crash":
// every refusal is INVALID_ARGUMENT (a bad field) or RESOURCE_EXHAUSTED (over a memory limit,
// docs/security.md "Limits") with a message; an accepted spec survives its own JSON
// form (what the coordinator stores in checkpoints and shows users) and normalising it again
// changes nothing.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/meta/job_spec.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void CheckRefusal(const absl::Status& status) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument ||
                 status.code() == absl::StatusCode::kResourceExhausted,
             status.ToString());
  FUZZ_CHECK(!status.message().empty(), "refusal without a message");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace meta = metatrain::meta;
  // The JSON and text parsers are linear; bigger inputs only slow the search down.
  if (size > 16 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = meta::ParseJobSpec(text);
  if (!parsed.ok()) {
    CheckRefusal(parsed.status());
    return 0;
  }
  auto normalized = meta::NormalizeJobSpec(*parsed);
  if (!normalized.ok()) {
    CheckRefusal(normalized.status());
    return 0;
  }
  const std::string json = meta::JobSpecToJson(*normalized);
  auto reparsed = meta::ParseJobSpec(json);
  FUZZ_CHECK(reparsed.ok(), reparsed.status().ToString() + "\n" + json);
  auto again = meta::NormalizeJobSpec(*reparsed);
  FUZZ_CHECK(again.ok(), again.status().ToString() + "\n" + json);
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  std::string difference;
  differencer.ReportDifferencesToString(&difference);
  FUZZ_CHECK(differencer.Compare(*normalized, *again), difference + "\n" + json);
  return 0;
}
