#ifndef METATRAIN_COORDINATOR_RPC_AUTH_H_
#define METATRAIN_COORDINATOR_RPC_AUTH_H_

// Who may call what on the coordinator (docs/security.md, "Authentication and roles").
//
// Job API clients send "authorization: Bearer <token>"; the tokens file (--tokens_file)
// gives each token a role: `admin` (every JobService RPC) or `read` (GetJob, ListJobs,
// WatchJob, FetchCheckpoint). Workers send the join token (--worker_token_file) on
// WorkerService.Session and, when the server has --tls_client_ca, must also present a
// certificate signed by it. Every RPC has a rule in RequiredPermission(); an RPC without
// one is refused, so a new RPC is closed until someone writes its rule (the rule table test
// iterates the services' descriptors).
//
// NOTE [Where calls are authorised]: each handler's first statement is Authorize(). gRPC
// 1.51 offers no server interceptor that can end a call before its handler, and an
// AuthMetadataProcessor only runs on TLS connections, while --insecure deployments (the
// tests, a loopback demo) must check tokens too. Authorize() reads nothing from disk and
// takes one short lock, so callback handlers may call it.
//
// Token files are re-read when they change (size, mtime or inode), by a background thread
// that looks every `reload_interval`: tokens rotate without a restart. A file that cannot
// be read or parsed on reload keeps the previous tokens, and the problem is logged. Tokens
// are kept only as SHA-256 digests and compared in constant time; no message, log line or
// metric carries a token.

#include <grpcpp/server_context.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace metatrain::coordinator {

enum class Role { kRead, kAdmin };
// What an RPC needs.
enum class Permission { kRead, kAdmin, kWorker };

// The rule for a full method name ("/metatrain.v1.JobService/SubmitJob"); nullopt for a
// method without one (refused).
std::optional<Permission> RequiredPermission(absl::string_view method);
std::string PermissionName(Permission permission);

using TokenDigest = std::array<unsigned char, 32>;

// One token file, parsed, reloaded when it changes. Thread-safe.
class TokenFile {
 public:
  enum class Format {
    kRoles,   // lines "<role> <token>", role admin or read (--tokens_file)
    kTokens,  // one token per line (--worker_token_file; several during a rotation)
  };
  // INVALID_ARGUMENT naming `flag`, the path and the line for a file that cannot be read
  // or parsed, or holds no token; tokens shorter than 16 characters are refused.
  static absl::StatusOr<std::unique_ptr<TokenFile>> Open(const std::string& flag,
                                                         const std::string& path, Format format,
                                                         absl::Duration reload_interval);
  ~TokenFile();

  // The role of `token` (kAdmin for any token of a kTokens file), or nullopt. Takes the
  // same time whatever the token's bytes and whichever entry matches.
  std::optional<Role> Find(absl::string_view token) const ABSL_LOCKS_EXCLUDED(mu_);
  // Reads the file now if it changed; what the background thread does.
  void ReloadIfChanged() ABSL_LOCKS_EXCLUDED(mu_);
  // Successful loads so far (the first included), for tests.
  int loads() const ABSL_LOCKS_EXCLUDED(mu_);

  struct Entry {
    Role role;
    TokenDigest digest;
  };
  struct Stamp {
    int64_t size = -1, mtime_ns = -1, ino = -1, ctime_ns = -1;
    bool operator==(const Stamp& o) const {
      return size == o.size && mtime_ns == o.mtime_ns && ino == o.ino && ctime_ns == o.ctime_ns;
    }
  };

 private:
  TokenFile(std::string flag, std::string path, Format format);

  const std::string flag_, path_;
  const Format format_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  Stamp stamp_ ABSL_GUARDED_BY(mu_);
  int loads_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reloader_;
};

// The caller of an authorised RPC.
struct Caller {
  // Distinguishes tokens (for per-token limits) without revealing them: a digest of the
  // token, or "" when the job API is open. Never logged.
  std::string key;
  std::optional<Role> role;  // nullopt when the job API is open
};

class Authorizer {
 public:
  struct Options {
    std::string tokens_file;        // empty: the job API is open to every caller
    std::string worker_token_file;  // empty: workers join without a token
    // Workers must present a verified client certificate (the server has --tls_client_ca).
    bool require_worker_certificate = false;
    absl::Duration reload_interval = absl::Seconds(1);
  };
  static absl::StatusOr<std::unique_ptr<Authorizer>> Create(const Options& options);

  // For a call of `method` (a full method name): the caller, or UNAUTHENTICATED (no token,
  // an unknown one, or a worker without a certificate) or PERMISSION_DENIED (a token whose
  // role lacks the right; an RPC without a rule).
  absl::StatusOr<Caller> Authorize(const grpc::ServerContextBase& context,
                                   absl::string_view method) const;

  bool job_api_open() const { return tokens_ == nullptr; }
  bool workers_open() const { return workers_ == nullptr && !require_worker_certificate_; }
  TokenFile* tokens() const { return tokens_.get(); }
  TokenFile* worker_tokens() const { return workers_.get(); }

 private:
  Authorizer() = default;
  std::unique_ptr<TokenFile> tokens_, workers_;
  bool require_worker_certificate_ = false;
};

// The bearer token of a call's metadata; empty when there is none.
absl::string_view BearerToken(const grpc::ServerContextBase& context);

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_RPC_AUTH_H_
