#include "coordinator/checkpoint_writer.h"

#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/meta/checkpoint.h"
#include "coordinator/job_checkpoint.h"

namespace metatrain::coordinator {

CheckpointWriter::CheckpointWriter(std::string dir, Written written)
    : dir_(std::move(dir)), written_(std::move(written)), thread_([this] { Loop(); }) {}

CheckpointWriter::~CheckpointWriter() {
  (void)Flush();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::Status CheckpointWriter::Write(const std::string& file,
                                     std::shared_ptr<const std::string> bytes, int64_t step) {
  absl::MutexLock lock(&mu_);
  if (!error_.ok()) return error_;
  pending_[file] = Pending{std::move(bytes), step};
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Flush() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_.empty() && !writing_; };
  mu_.Await(absl::Condition(&idle));
  return error_;
}

void CheckpointWriter::Loop() {
  while (true) {
    std::string file;
    Pending job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !pending_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (pending_.empty()) return;  // stopping, nothing left
      file = pending_.begin()->first;
      job = std::move(pending_.begin()->second);
      pending_.erase(pending_.begin());
      writing_ = true;
    }
    const absl::Time start = absl::Now();
    absl::Status status = WriteFile(file, *job.bytes);
    const absl::Duration took = absl::Now() - start;
    if (status.ok() && written_) {
      written_(file, job.step, static_cast<int64_t>(job.bytes->size()), took,
               (std::filesystem::path(dir_) / file).string());
    }
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!status.ok() && error_.ok()) error_ = status;
  }
}

absl::Status CheckpointWriter::WriteFile(const std::string& file, const std::string& bytes) {
  const std::string path = (std::filesystem::path(dir_) / file).string();
  if (file == kResumeFile) {
    // Keep the previous resume point until the new one is safely on disk under its name:
    // a crash in between leaves resume.prev.pt, which a restart uses.
    const std::string previous = (std::filesystem::path(dir_) / kPreviousResumeFile).string();
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      std::filesystem::rename(path, previous, ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot rename ", path, ": ", ec.message()));
    }
  }
  return meta::WriteFileAtomically(path, bytes);
}

}  // namespace metatrain::coordinator
