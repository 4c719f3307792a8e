#include "common/logging/log.h"

#include <unistd.h>

#include <deque>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace metatrain {
namespace {

// Lines a burst may queue before new ones are dropped: a second of a very chatty
// coordinator, well under a megabyte.
constexpr size_t kMaxQueuedLines = 4096;

void WriteAll(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) return;  // nowhere to report a failure to write the log
    done += static_cast<size_t>(n);
  }
}

class AsyncLog {
 public:
  AsyncLog() {
    std::thread([this] { WriteLoop(); }).detach();
  }

  void set_program(absl::string_view program) {
    absl::MutexLock lock(&mu_);
    program_ = std::string(program);
  }

  void Push(absl::string_view line) {
    const std::string stamp =
        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
    absl::MutexLock lock(&mu_);
    if (queue_.size() >= kMaxQueuedLines) {
      ++dropped_;
      return;
    }
    queue_.push_back(absl::StrCat(stamp, " ", program_, ": ", line, "\n"));
  }

  void Flush(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !writing_; };
    mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  }

 private:
  void WriteLoop() {
    while (true) {
      std::deque<std::string> batch;
      int64_t dropped = 0;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || dropped_ > 0;
        };
        mu_.Await(absl::Condition(&ready));
        batch.swap(queue_);
        dropped = dropped_;
        dropped_ = 0;
        writing_ = true;
      }
      std::string text;
      for (const std::string& line : batch) text += line;
      if (dropped > 0) {
        text += absl::StrCat("(", dropped, " log lines dropped: the log could not keep up)\n");
      }
      WriteAll(text);
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
  }

  absl::Mutex mu_;
  std::string program_ ABSL_GUARDED_BY(mu_) = "metatrain";
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
};

AsyncLog& Log() {
  static auto* log = new AsyncLog();  // never destroyed: its thread outlives main
  return *log;
}

}  // namespace

void SetLogProgram(absl::string_view program) { Log().set_program(program); }

void LogLine(absl::string_view line) { Log().Push(line); }

void FlushLog(absl::Duration timeout) { Log().Flush(timeout); }

}  // namespace metatrain
