// End-to-end faults of one worker among others, made for real: a frozen process (SIGSTOP),
// a network partition (a network namespace whose traffic iptables drops), a worker ten
// times slower than the other (SIGSTOP/SIGCONT cycles). Each job runs far longer than the
// test needs and is stopped with SIGTERM once the point is made; the parameters at that
// resume point must be the single-process trainer's after as many steps, bit for bit
// (Cluster::StopAndExpectTheTrainersBits). docs/reliability.md quotes what these print.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/e2e/cluster_fixture.h"
#include "tests/e2e/process.h"

namespace metatrain::e2e {
namespace {

constexpr int kLivenessSeconds = 6;

// A long job (stopped by SIGTERM) with few validations, so that the reference run for the
// step it stops at stays short.
v1::JobSpec LongSpec() {
  v1::JobSpec spec = TestSpec(1000000);
  spec.set_validation_interval(1000);
  return spec;
}

// SIGSTOP for 30 s: the coordinator drops the worker within the liveness time (unanswered
// keepalive pings), the other worker carries the job meanwhile, the thawed worker rejoins by
// itself, and the bits do not change.
TEST_F(Cluster, FrozenWorkerIsDroppedWithinTheLivenessTimeAndRejoins) {
  RestartCoordinator({absl::StrCat("--worker_liveness_s=", kLivenessSeconds)});
  ASSERT_FALSE(HasFatalFailure());
  const v1::JobSpec spec = LongSpec();
  AddWorker();
  ChildProcess& frozen = AddWorker();
  const std::string job = Submit(spec);
  ASSERT_EQ(WatchUntil(job, [](const v1::JobStatus& s) { return s.workers() == 2; }).state(),
            v1::RUNNING);
  frozen.Signal(SIGSTOP);
  const absl::Time stopped = absl::Now();
  const v1::JobStatus alone =
      WatchUntil(job, [](const v1::JobStatus& s) { return s.workers() == 1; });
  const double detected = absl::ToDoubleSeconds(absl::Now() - stopped);
  ASSERT_EQ(alone.workers(), 1) << "the frozen worker was never dropped";
  EXPECT_LE(detected, 2.0 * kLivenessSeconds);
  absl::SleepFor(absl::Seconds(30) - (absl::Now() - stopped));
  const v1::JobStatus before_thaw = Current(job);
  EXPECT_GT(before_thaw.step(), alone.step()) << "the job stalled while a worker was frozen";
  frozen.Signal(SIGCONT);
  const absl::Time thawed = absl::Now();
  const v1::JobStatus rejoined = WatchUntil(
      job, [](const v1::JobStatus& s) { return s.workers() == 2; }, std::chrono::seconds(90));
  EXPECT_EQ(rejoined.workers(), 2) << "the thawed worker did not rejoin";
  std::printf(
      "frozen 30 s: dropped %.1f s after SIGSTOP (liveness %d s); %lld steps while frozen; "
      "rejoined %.1f s after SIGCONT\n",
      detected, kLivenessSeconds, static_cast<long long>(before_thaw.step() - alone.step()),
      absl::ToDoubleSeconds(absl::Now() - thawed));
  StopAndExpectTheTrainersBits(job, spec, "after a worker froze for 30 s");
}

// A network namespace joined to this one by a veth pair: a worker started inside it reaches
// the coordinator at host_ip(), and Partition() drops every packet in and out of it.
class Namespace {
 public:
  // Unavailable (the caller skips) where namespaces cannot be made: no root, no iproute2,
  // a container without CAP_NET_ADMIN.
  static absl::StatusOr<std::unique_ptr<Namespace>> Create() {
    std::unique_ptr<Namespace> ns(new Namespace);
    const int id = getpid() % 200 + 20;
    ns->name_ = absl::StrCat("mt-part-", getpid());
    const std::string host_if = absl::StrCat("mtp", getpid() % 100000, "h");
    const std::string ns_if = absl::StrCat("mtp", getpid() % 100000, "n");
    ns->host_ip_ = absl::StrCat("10.213.", id, ".1");
    const std::string ns_ip = absl::StrCat("10.213.", id, ".2");
    const std::vector<std::vector<std::string>> setup = {
        {kIp, "netns", "add", ns->name_},
        {kIp, "link", "add", host_if, "type", "veth", "peer", "name", ns_if},
        {kIp, "link", "set", ns_if, "netns", ns->name_},
        {kIp, "addr", "add", ns->host_ip_ + "/30", "dev", host_if},
        {kIp, "link", "set", host_if, "up"},
        {kIp, "netns", "exec", ns->name_, kIp, "addr", "add", ns_ip + "/30", "dev", ns_if},
        {kIp, "netns", "exec", ns->name_, kIp, "link", "set", ns_if, "up"},
        {kIp, "netns", "exec", ns->name_, kIp, "link", "set", "lo", "up"},
    };
    for (const auto& argv : setup) {
      auto run = RunCommand(argv, absl::Seconds(30));
      if (!run.ok()) return run.status();
      if (run->exit_code != 0) {
        return absl::UnavailableError(
            absl::StrCat(absl::StrJoin(argv, " "), ": exit ", run->exit_code, ": ", run->err));
      }
      ns->created_ = true;
    }
    return ns;
  }

  ~Namespace() {
    // Deleting the namespace deletes its end of the veth pair, which deletes the other.
    if (created_) (void)RunCommand({kIp, "netns", "del", name_}, absl::Seconds(30));
  }

  std::vector<std::string> ExecPrefix() const { return {kIp, "netns", "exec", name_}; }
  const std::string& host_ip() const { return host_ip_; }

  absl::Status Partition(bool cut) {
    for (const char* chain : {"INPUT", "OUTPUT"}) {
      auto run = RunCommand(
          {kIp, "netns", "exec", name_, kIptables, cut ? "-I" : "-D", chain, "-j", "DROP"},
          absl::Seconds(30));
      if (!run.ok()) return run.status();
      if (run->exit_code != 0) {
        return absl::InternalError(absl::StrCat("iptables ", chain, ": ", run->err));
      }
    }
    return absl::OkStatus();
  }

 private:
  static constexpr const char* kIp = "/usr/sbin/ip";
  static constexpr const char* kIptables = "/usr/sbin/iptables";
  Namespace() = default;
  std::string name_, host_ip_;
  bool created_ = false;
};

// The worker's network is cut for 30 s (its process runs on): the coordinator drops it
// within the liveness time, the other worker carries the job, the worker notices by its
// own keepalive, reconnects once the network is back, and the bits do not change.
TEST_F(Cluster, PartitionedWorkerIsDroppedAndRejoinsWhenTheNetworkHeals) {
  auto ns = Namespace::Create();
  if (!ns.ok()) GTEST_SKIP() << "no network namespace here: " << ns.status();
  RestartCoordinator({absl::StrCat("--worker_liveness_s=", kLivenessSeconds)}, "0.0.0.0:0");
  ASSERT_FALSE(HasFatalFailure());
  const std::string port = coordinator_.address.substr(coordinator_.address.rfind(':') + 1);
  const v1::JobSpec spec = LongSpec();
  AddWorker();
  AddWorker({}, (*ns)->ExecPrefix(), absl::StrCat((*ns)->host_ip(), ":", port));
  ASSERT_FALSE(HasFailure()) << "the worker in the namespace did not connect";
  const std::string job = Submit(spec);
  ASSERT_EQ(WatchUntil(job, [](const v1::JobStatus& s) { return s.workers() == 2; }).state(),
            v1::RUNNING);
  ASSERT_TRUE((*ns)->Partition(true).ok());
  const absl::Time cut = absl::Now();
  const v1::JobStatus alone =
      WatchUntil(job, [](const v1::JobStatus& s) { return s.workers() == 1; });
  const double detected = absl::ToDoubleSeconds(absl::Now() - cut);
  ASSERT_EQ(alone.workers(), 1) << "the partitioned worker was never dropped";
  EXPECT_LE(detected, 2.0 * kLivenessSeconds);
  absl::SleepFor(absl::Seconds(30) - (absl::Now() - cut));
  const v1::JobStatus before_heal = Current(job);
  EXPECT_GT(before_heal.step(), alone.step()) << "the job stalled during the partition";
  ASSERT_TRUE((*ns)->Partition(false).ok());
  const absl::Time healed = absl::Now();
  const v1::JobStatus rejoined = WatchUntil(
      job, [](const v1::JobStatus& s) { return s.workers() == 2; }, std::chrono::seconds(120));
  EXPECT_EQ(rejoined.workers(), 2) << "the worker did not rejoin after the partition healed";
  std::printf(
      "partitioned 30 s: dropped %.1f s after the cut (liveness %d s); %lld steps meanwhile; "
      "rejoined %.1f s after the network healed\n",
      detected, kLivenessSeconds, static_cast<long long>(before_heal.step() - alone.step()),
      absl::ToDoubleSeconds(absl::Now() - healed));
  StopAndExpectTheTrainersBits(job, spec, "after a 30 s partition");
}

// One worker runs 10% of the time (SIGCONT for 10 ms, SIGSTOP for 90 ms): speculative
// copies finish its tasks on the other worker, and it gets no new work while it still owes
// an answer (NOTE [Cancelled assignments]). The throughput with it is printed beside the
// throughput of the other worker alone (docs/reliability.md quotes it: a rate is a
// measurement, not an assertion); the bits must not change.
TEST_F(Cluster, TenTimesSlowerWorkerChangesNoBit) {
  const v1::JobSpec spec = LongSpec();
  AddWorker();
  const std::string job = Submit(spec);
  ASSERT_EQ(WatchUntil(job, [](const v1::JobStatus& s) { return s.step() >= 20; }).state(),
            v1::RUNNING);
  auto rate = [&](int64_t steps) {
    const v1::JobStatus from = Current(job);
    const absl::Time start = absl::Now();
    const v1::JobStatus to =
        WatchUntil(job, [&](const v1::JobStatus& s) { return s.step() >= from.step() + steps; });
    return static_cast<double>(to.step() - from.step()) /
           absl::ToDoubleSeconds(absl::Now() - start);
  };
  const double alone = rate(1500);
  ChildProcess& slow = AddWorker();
  std::atomic<bool> cycling{true};
  std::thread cycle([&] {
    while (cycling.load()) {
      slow.Signal(SIGCONT);
      absl::SleepFor(absl::Milliseconds(10));
      slow.Signal(SIGSTOP);
      absl::SleepFor(absl::Milliseconds(90));
    }
    slow.Signal(SIGCONT);
  });
  const v1::JobStatus both =
      WatchUntil(job, [](const v1::JobStatus& s) { return s.workers() == 2; });
  const double with_slow = rate(1500);
  cycling = false;
  cycle.join();
  EXPECT_EQ(both.workers(), 2) << "the slow worker never took part";
  std::printf(
      "10x slower worker: %.0f steps/s with it, %.0f steps/s with the other worker alone "
      "(%.0f%%)\n",
      with_slow, alone, 100.0 * with_slow / alone);
  StopAndExpectTheTrainersBits(job, spec, "with a 10x slower worker");
}

}  // namespace
}  // namespace metatrain::e2e
