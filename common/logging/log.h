#ifndef METATRAIN_COMMON_LOGGING_LOG_H_
#define METATRAIN_COMMON_LOGGING_LOG_H_

// Operator log lines on stderr: one line per event, with a UTC timestamp and the program,
//   2026-12-02T07:41:03.512Z metatrain-coordinator: job job-000001 started (2 workers)
//
// LogLine never does I/O itself: it queues the line (bounded) for a writer thread, so it
// may be called under any lock, from gRPC callbacks included. When the queue is full the
// line is dropped and counted, and the writer says how many were dropped. Each line goes
// out in one write(2), so lines never interleave.

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace metatrain {

// The program name that prefixes every line ("metatrain-coordinator"); set once in main,
// before any thread logs.
void SetLogProgram(absl::string_view program);

void LogLine(absl::string_view line);

// Waits (up to `timeout`) until every queued line is written: before a process exits.
void FlushLog(absl::Duration timeout = absl::Seconds(1));

}  // namespace metatrain

#endif  // METATRAIN_COMMON_LOGGING_LOG_H_
