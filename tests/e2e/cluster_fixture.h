#ifndef METATRAIN_TESTS_E2E_CLUSTER_FIXTURE_H_
#define METATRAIN_TESTS_E2E_CLUSTER_FIXTURE_H_

// The fixture of the end-to-end cluster tests: a real metatrain-coordinator (plaintext, on
// loopback) and real metatrain-worker processes, driven through the job API, with the
// single-process trainer's result to compare against bit for bit.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/meta/trainer.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "tests/e2e/process.h"

namespace metatrain::e2e {

// Small enough to run in seconds on 2 shared cores; 7 tasks over 2 or 3 workers makes
// uneven shards, and validation + plateau-free Adam exercise the whole outer loop.
v1::JobSpec TestSpec(int64_t steps);

struct Reference {
  std::vector<meta::ParamSpec> specs;
  at::ScalarType dtype;
  meta::TrainingResult result;
};

// The single-process core's answer for `spec`.
Reference TrainInProcess(const v1::JobSpec& spec);

class Cluster : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A fresh channel to the coordinator's address: after a restart the old channel may be in
  // its reconnect backoff and fail the next call at once.
  void ReconnectStub();
  // Replaces the coordinator (and forgets its jobs) with one started with `flags`, listening
  // on `listen`.
  void RestartCoordinator(const std::vector<std::string>& flags,
                          const std::string& listen = "127.0.0.1:0");
  // Starts a worker and waits until it is connected, so the next step includes it.
  // `prefix` runs before the binary (e.g. `ip netns exec NS`); `address` replaces the
  // coordinator's when not empty.
  ChildProcess& AddWorker(const std::vector<std::string>& flags = {},
                          const std::vector<std::string>& prefix = {},
                          const std::string& address = "");
  std::string Submit(const v1::JobSpec& spec);
  // Watches until `until` holds for an event (returns that event's status) or the job
  // ends (returns the final status). Bounded by `deadline`.
  v1::JobStatus WatchUntil(const std::string& job_id,
                           const std::function<bool(const v1::JobStatus&)>& until,
                           std::chrono::seconds deadline = std::chrono::seconds(240));
  v1::JobStatus WaitForEnd(const std::string& job_id);
  // The job's status now (a watch's first event is a snapshot).
  v1::JobStatus Current(const std::string& job_id);
  meta::TensorList Fetch(const std::string& job_id, const std::string& which,
                         const Reference& reference);
  static void ExpectBitIdentical(const meta::TensorList& got, const meta::TensorList& want,
                                 const std::string& what);
  // For jobs too long to wait for: SIGTERM stops the coordinator at a resume point (its last
  // finished step); the parameters there must be those of the single-process trainer run
  // for as many steps. Returns that step.
  int64_t StopAndExpectTheTrainersBits(const std::string& job_id, v1::JobSpec spec,
                                       const std::string& what);

  std::string dir_;
  Coordinator coordinator_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

}  // namespace metatrain::e2e

#endif  // METATRAIN_TESTS_E2E_CLUSTER_FIXTURE_H_
