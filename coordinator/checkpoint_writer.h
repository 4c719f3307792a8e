#ifndef METATRAIN_COORDINATOR_CHECKPOINT_WRITER_H_
#define METATRAIN_COORDINATOR_CHECKPOINT_WRITER_H_

// Writes one job's checkpoint files on a thread of its own, so the training loop never
// waits for a disk (fsync takes tens of milliseconds on a busy one). Files are written
// atomically (temporary file, fsync, rename); resume.pt is rotated: the one it replaces
// becomes resume.prev.pt, which a restart falls back to (job_checkpoint.h).
//
// Bounded: at most one pending write per file name; a newer resume.pt replaces a waiting
// one (only the newest matters). The first failure is kept and returned by every later
// Write and by Flush, so a failing disk fails the job rather than losing checkpoints
// silently.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace metatrain::coordinator {

class CheckpointWriter {
 public:
  // Called on the writer thread after each file is on disk.
  using Written = std::function<void(const std::string& file, int64_t step, int64_t bytes,
                                     absl::Duration took, const std::string& path)>;

  CheckpointWriter(std::string dir, Written written);
  // Flushes, then stops the thread.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Queues `bytes` for <dir>/<file>. Never waits for the disk. Returns the first write
  // error so far (the write is not queued then).
  absl::Status Write(const std::string& file, std::shared_ptr<const std::string> bytes,
                     int64_t step) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until everything queued is on disk; the first write error, if any.
  absl::Status Flush() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    std::shared_ptr<const std::string> bytes;
    int64_t step = 0;
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteFile(const std::string& file, const std::string& bytes);

  const std::string dir_;
  const Written written_;

  absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_CHECKPOINT_WRITER_H_
