// A soak: one real metatrain-coordinator process, 64 worker sessions (the real worker
// library, SessionClient over InnerLoopRunner, in threads of this process, over real gRPC
// on loopback) and two waves of 20 jobs at once. Every job must end with the
// single-process trainer's bits (a task lost or counted twice would change them), and the
// coordinator's resident memory after the second wave must stay where the first left it.
// The figures are printed; docs/reliability.md quotes them.

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/e2e/cluster_fixture.h"
#include "tests/testing/library_worker.h"

namespace metatrain::e2e {
namespace {

constexpr int kSessions = 64;
constexpr int kJobsPerWave = 20;

// Resident memory of `pid` in MiB (VmRSS), or -1.
double ResidentMiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    int64_t kib = 0;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits += c;
    }
    if (absl::SimpleAtoi(digits, &kib)) return static_cast<double>(kib) / 1024.0;
  }
  return -1;
}

TEST_F(Cluster, SixtyFourSessionsTwoWavesOfTwentyJobsNoJobLostAndMemoryFlat) {
  RestartCoordinator({absl::StrCat("--max_running_jobs=", kJobsPerWave)});
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<testing::LibraryWorker>> workers;
  for (int i = 0; i < kSessions; ++i) {
    worker::SessionOptions session;
    session.coordinator = coordinator_.address;
    session.name = absl::StrCat("soak-", i);
    session.capacity = 4;
    session.verbose = false;
    worker::RunnerOptions runner;
    runner.max_cached_jobs = 4;  // fewer than the jobs at once: setups are evicted and resent
    workers.push_back(std::make_unique<testing::LibraryWorker>(session, runner));
  }
  const pid_t pid = coordinator_.process->pid();
  std::vector<double> after_wave;
  const absl::Time start = absl::Now();
  int64_t jobs_done = 0;
  for (int wave = 0; wave < 2; ++wave) {
    std::vector<v1::JobSpec> specs;
    std::vector<std::string> jobs;
    for (int j = 0; j < kJobsPerWave; ++j) {
      v1::JobSpec spec = TestSpec(30);
      spec.set_seed(1000 * wave + j);
      specs.push_back(spec);
      jobs.push_back(Submit(spec));
    }
    for (int j = 0; j < kJobsPerWave; ++j) {
      const v1::JobStatus status = WaitForEnd(jobs[j]);
      ASSERT_EQ(status.state(), v1::SUCCEEDED) << jobs[j] << ": " << status.error();
      ++jobs_done;
    }
    for (int j = 0; j < kJobsPerWave; ++j) {
      const Reference reference = TrainInProcess(specs[j]);
      ExpectBitIdentical(Fetch(jobs[j], "final", reference), reference.result.final_params,
                         absl::StrCat("wave ", wave, " job ", j));
    }
    after_wave.push_back(ResidentMiB(pid));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "soak: %d sessions, %lld jobs in %.0f s; coordinator RSS %.0f MiB after the first wave, "
      "%.0f MiB after the second\n",
      kSessions, static_cast<long long>(jobs_done), seconds, after_wave[0], after_wave[1]);
  ASSERT_GT(after_wave[0], 0);
  // Flat: the second wave's jobs, sessions and metric series reuse what the first grew.
  EXPECT_LT(after_wave[1], after_wave[0] * 1.25 + 16)
      << "the coordinator's memory grew by " << after_wave[1] - after_wave[0]
      << " MiB over the second wave";
  for (auto& w : workers) w->Stop();
}

}  // namespace
}  // namespace metatrain::e2e
