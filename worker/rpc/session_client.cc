#include "worker/rpc/session_client.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/logging/log.h"
#include "common/meta/rng.h"
#include "common/rpc/credentials.h"
#include "common/version/version.h"
#include "metatrain/v1/worker_service.grpc.pb.h"
#include "worker/rpc/session_inbox.h"

namespace metatrain::worker {
namespace {

// What the reader may queue ahead of the computation (worker/rpc/session_inbox.h). The
// coordinator sends a worker at most one assignment per job at a time, with its job's
// setup and parameters; this leaves room for several jobs' worth.
constexpr int64_t kMaxInboxBytes = int64_t{256} << 20;

std::shared_ptr<grpc::Channel> MakeChannel(const SessionOptions& options) {
  grpc::ChannelArguments args;
  if (options.credentials && !options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  // Tensors travel in pieces of at most 1 MiB; leave headroom anyway.
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  // Retry the TCP connection quickly so a coordinator that comes up is found within ~1 s;
  // the session-level backoff below decides how often we try to open a stream.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Detect a coordinator host that vanished without closing the connection (a dead
  // process is noticed at once anyway: its kernel closes the socket). The coordinator's
  // server accepts pings every 5 s or more (coordinator/rpc/server.cc).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  return grpc::CreateCustomChannel(
      options.coordinator,
      options.credentials ? options.credentials : grpc::InsecureChannelCredentials(), args);
}

}  // namespace

SessionClient::SessionClient(SessionOptions options, InnerLoopRunner* runner)
    : options_(std::move(options)), runner_(runner), channel_(MakeChannel(options_)) {}

void SessionClient::Log(const std::string& line) const {
  if (options_.verbose) LogLine(line);
}

void SessionClient::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;  // wakes WaitFor: Await re-checks its condition when mu_ is released
  if (current_ != nullptr) current_->TryCancel();
}

bool SessionClient::WaitFor(std::chrono::milliseconds d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopped_), absl::FromChrono(d));
  return !stopped_;
}

absl::Status SessionClient::Run() {
  meta::Rng jitter(
      meta::MixSeed({static_cast<uint64_t>(getpid()), static_cast<uint64_t>(std::time(nullptr))}));
  std::chrono::milliseconds backoff = options_.initial_backoff;
  bool announced_wait = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return absl::CancelledError("worker stopped");
    }
    bool welcomed = false;
    absl::Status refusal;
    SessionEnd end = RunSession(welcomed, refusal);
    if (end == SessionEnd::kShutdown) return absl::OkStatus();
    if (end == SessionEnd::kRefused) return refusal;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return absl::CancelledError("worker stopped");
    }
    if (welcomed) {
      backoff = options_.initial_backoff;  // a healthy session resets the backoff
      announced_wait = false;
    }
    const double factor = jitter.Uniform(0.75, 1.25);
    auto wait = std::chrono::milliseconds(static_cast<int64_t>(backoff.count() * factor));
    if (!announced_wait) {
      // The reason tells a coordinator not up yet from a TLS handshake that fails.
      Log(absl::StrCat("waiting for the coordinator at ", options_.coordinator,
                       " (retrying with backoff up to ", options_.max_backoff.count(), " ms",
                       last_error_.empty() ? "" : "; last error: ", last_error_, ")"));
      announced_wait = true;
    }
    if (!WaitFor(wait)) return absl::CancelledError("worker stopped");
    backoff = std::min(options_.max_backoff, backoff * 2);
  }
}

SessionClient::SessionEnd SessionClient::RunSession(bool& welcomed, absl::Status& refusal) {
  auto stub = v1::WorkerService::NewStub(channel_);
  grpc::ClientContext context;
  std::string token = options_.token;
  if (!options_.token_file.empty()) {
    auto read = rpc::ReadTokenFile(options_.token_file);
    if (read.ok()) {
      token = *std::move(read);
    } else {
      Log(absl::StrCat(read.status().message(), "; retrying"));  // e.g. mid-rotation
      return SessionEnd::kLost;
    }
  }
  rpc::AttachToken(&context, token);
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return SessionEnd::kLost;
    current_ = &context;
  }
  auto stream = stub->Session(&context);
  v1::WorkerMessage hello_message;
  v1::Hello* hello = hello_message.mutable_hello();
  hello->set_name(options_.name);
  hello->set_device(options_.device);
  hello->set_capacity(options_.capacity);
  hello->set_threads(options_.threads);
  hello->set_version(Version());

  SessionEnd end = SessionEnd::kLost;
  bool write_failed = !stream->Write(hello_message);
  if (options_.metrics) {
    options_.metrics->BytesSent(static_cast<int64_t>(hello_message.ByteSizeLong()));
  }
  runner_->ResetSession();
  auto write = [&](const v1::WorkerMessage& out) {
    if (write_failed) return;
    if (options_.metrics) options_.metrics->BytesSent(static_cast<int64_t>(out.ByteSizeLong()));
    // An assignment's gradients are always followed by its AssignmentDone, written without
    // the hint, which flushes them: one flush per assignment instead of one per gradient
    // message (25 per sinusoid step, each a round trip through gRPC's completion queue on
    // this, the computing, thread).
    grpc::WriteOptions write_options;
    if (out.has_gradient() || out.has_gradients()) write_options.set_buffer_hint();
    if (!stream->Write(out, write_options)) write_failed = true;
  };
  // The reader thread only reads and queues (applying cancels on arrival); this thread
  // computes and writes: one reader and one writer, as gRPC's sync streams allow.
  SessionInbox inbox(kMaxInboxBytes);
  std::thread reader([&] {
    v1::CoordinatorMessage incoming;
    while (stream->Read(&incoming)) {
      if (options_.metrics) {
        options_.metrics->BytesReceived(static_cast<int64_t>(incoming.ByteSizeLong()));
      }
      if (!inbox.Push(std::move(incoming))) break;
      incoming.Clear();
    }
    inbox.Close();
  });
  while (!write_failed) {
    // The gap between a step's gradients and the next parameters: sample the next
    // assignment's likely episodes (NOTE [Episode prefetch], inner_loop_runner.h).
    if (inbox.empty()) runner_->PrefetchNextEpisodes();
    std::optional<SessionInbox::Item> item = inbox.Pop();
    if (!item) break;
    const v1::CoordinatorMessage& message = item->message;
    switch (message.kind_case()) {
      case v1::CoordinatorMessage::kWelcome:
        welcomed = true;
        sessions_.fetch_add(1);
        if (options_.metrics) options_.metrics->SessionStarted();
        Log(absl::StrCat("connected to ", options_.coordinator, " as worker ",
                         message.welcome().worker_id()));
        break;
      case v1::CoordinatorMessage::kJobSetup: {
        absl::Status status = runner_->HandleJobSetup(message.job_setup());
        Log(status.ok() ? absl::StrCat("set up job ", message.job_setup().job_id())
                        : status.ToString());
        break;
      }
      case v1::CoordinatorMessage::kParameters: {
        absl::Status status = runner_->HandleParameters(message.parameters());
        if (!status.ok()) Log(status.ToString());
        break;
      }
      case v1::CoordinatorMessage::kAssignment:
        if (item->cancelled) {
          // NOTE [Cancelled assignments] (coordinator/worker_pool_source.h).
          v1::WorkerMessage out;
          out.mutable_done()->set_assignment_id(message.assignment().assignment_id());
          out.mutable_done()->set_cancelled(true);
          write(out);
          break;
        }
        runner_->HandleAssignment(
            message.assignment(),
            [&](v1::WorkerMessage out) {
              if (out.has_done()) {
                const v1::AssignmentDone& done = out.done();
                if (done.needs_setup()) {
                  Log(absl::StrCat(
                      "assignment ", done.assignment_id(), " of job ",
                      message.assignment().job_id(),
                      ": its setup or parameters are no longer cached here "
                      "(--max_cached_jobs); asked the coordinator to send them again"));
                } else if (!done.error().empty()) {
                  Log(absl::StrCat("assignment ", done.assignment_id(), " failed: ", done.error()));
                } else if (options_.log_assignments) {
                  const v1::Assignment& a = message.assignment();
                  Log(absl::StrFormat("assignment %d job %s version %d tasks %d compute %.6f",
                                      a.assignment_id(), a.job_id(), a.version(),
                                      a.task_indices_size(), done.compute_seconds()));
                }
              }
              write(out);
            },
            [&inbox, id = message.assignment().assignment_id()] {
              return inbox.CancelRequested(id);
            });
        break;
      case v1::CoordinatorMessage::kShutdown:
        Log(absl::StrCat("coordinator asked to shut down: ", message.shutdown().reason()));
        end = SessionEnd::kShutdown;
        break;
      default:
        Log("ignoring an empty message from the coordinator");
        break;
    }
    if (end == SessionEnd::kShutdown) break;
  }
  if (end == SessionEnd::kShutdown) stream->WritesDone();
  // The coordinator may keep its side open (after Shutdown) or be gone (a failed write):
  // either way the reader must stop waiting for it.
  if (end == SessionEnd::kShutdown || write_failed) context.TryCancel();
  inbox.Close();
  reader.join();
  grpc::Status status = stream->Finish();
  if (welcomed && options_.metrics) options_.metrics->SessionEnded();
  {
    absl::MutexLock lock(&mu_);
    current_ = nullptr;
  }
  // Refused at Hello: the coordinator answers the same whenever asked (worker_service.h).
  if (end == SessionEnd::kLost && !welcomed &&
      (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
       status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
       status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
       status.error_code() == grpc::StatusCode::PERMISSION_DENIED)) {
    refusal = absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                           absl::StrCat("the coordinator at ", options_.coordinator,
                                        " refused this worker: ", status.error_message()));
    return SessionEnd::kRefused;
  }
  if (end == SessionEnd::kLost && !welcomed) last_error_ = status.error_message();
  if (end == SessionEnd::kLost && welcomed) {
    Log(absl::StrCat(
        "lost the coordinator (",
        status.error_message().empty() ? std::string("stream closed") : status.error_message(),
        ")"));
  }
  return end;
}

}  // namespace metatrain::worker
