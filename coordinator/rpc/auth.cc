#include "coordinator/rpc/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging/log.h"
#include "common/rpc/credentials.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "metatrain/v1/worker_service.grpc.pb.h"

namespace metatrain::coordinator {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr int64_t kMaxTokenFileBytes = 1 << 20;

std::string Method(const char* service, const char* rpc) {
  return absl::StrCat("/", service, "/", rpc);
}

// Every RPC the coordinator serves and what it needs. Health and reflection are not here:
// they are registered by gRPC itself, carry no job data and are open (docs/security.md).
const absl::flat_hash_map<std::string, Permission>& Rules() {
  static const auto* rules = [] {
    const char* jobs = v1::JobService::service_full_name();
    return new absl::flat_hash_map<std::string, Permission>{
        {Method(jobs, "SubmitJob"), Permission::kAdmin},
        {Method(jobs, "CancelJob"), Permission::kAdmin},
        {Method(jobs, "GetJob"), Permission::kRead},
        {Method(jobs, "ListJobs"), Permission::kRead},
        {Method(jobs, "WatchJob"), Permission::kRead},
        {Method(jobs, "FetchCheckpoint"), Permission::kRead},
        {Method(v1::WorkerService::service_full_name(), "Session"), Permission::kWorker},
    };
  }();
  return *rules;
}

TokenDigest Digest(absl::string_view token) {
  TokenDigest digest{};
  unsigned int size = 0;
  EVP_Digest(token.data(), token.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return digest;
}

absl::StatusOr<TokenFile::Stamp> StampOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(std::strerror(errno));
  }
  TokenFile::Stamp stamp;
  stamp.size = st.st_size;
  stamp.ino = static_cast<int64_t>(st.st_ino);
  stamp.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  stamp.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return stamp;
}

// Parses a token file. Errors name the line, never its content.
absl::StatusOr<std::vector<TokenFile::Entry>> Parse(const std::string& flag,
                                                    const std::string& path,
                                                    TokenFile::Format format) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", path, "': cannot open (", std::strerror(errno), ")"));
  }
  std::string bytes(static_cast<size_t>(kMaxTokenFileBytes) + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (static_cast<int64_t>(bytes.size()) > kMaxTokenFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", path, "': larger than 1 MiB"));
  }
  std::vector<TokenFile::Entry> entries;
  absl::flat_hash_map<std::string, int> seen;  // digest -> line
  int number = 0;
  for (absl::string_view line : absl::StrSplit(bytes, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " '", path, "' line ", number, ": ", why));
    };
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    TokenFile::Entry entry{Role::kAdmin, {}};
    absl::string_view token;
    if (format == TokenFile::Format::kRoles) {
      if (fields.size() != 2) return bad("expected \"<role> <token>\" (role admin or read)");
      if (fields[0] == "admin") {
        entry.role = Role::kAdmin;
      } else if (fields[0] == "read") {
        entry.role = Role::kRead;
      } else {
        return bad("the role must be admin or read");
      }
      token = fields[1];
    } else {
      if (fields.size() != 1) return bad("expected one token on the line");
      token = fields[0];
    }
    if (!rpc::IsValidToken(std::string(token))) {
      return bad("a token must be printable ASCII without spaces");
    }
    if (token.size() < kMinTokenLength) {
      return bad(absl::StrCat("a token must have at least ", kMinTokenLength,
                              " characters (openssl rand -hex 32 makes one)"));
    }
    entry.digest = Digest(token);
    const std::string key(entry.digest.begin(), entry.digest.end());
    if (auto [it, inserted] = seen.emplace(key, number); !inserted) {
      return bad(absl::StrCat("the same token as line ", it->second));
    }
    entries.push_back(entry);
  }
  if (entries.empty())
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", path, "': no token in it"));
  return entries;
}

}  // namespace

std::optional<Permission> RequiredPermission(absl::string_view method) {
  auto it = Rules().find(method);
  if (it == Rules().end()) return std::nullopt;
  return it->second;
}

std::string PermissionName(Permission permission) {
  switch (permission) {
    case Permission::kRead:
      return "read";
    case Permission::kAdmin:
      return "admin";
    case Permission::kWorker:
      return "worker";
  }
  return "?";
}

TokenFile::TokenFile(std::string flag, std::string path, Format format)
    : flag_(std::move(flag)), path_(std::move(path)), format_(format) {}

absl::StatusOr<std::unique_ptr<TokenFile>> TokenFile::Open(const std::string& flag,
                                                           const std::string& path, Format format,
                                                           absl::Duration reload_interval) {
  auto stamp = StampOf(path);
  if (!stamp.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", path, "': cannot open (", stamp.status().message(), ")"));
  }
  auto entries = Parse(flag, path, format);
  if (!entries.ok()) return entries.status();
  std::unique_ptr<TokenFile> file(new TokenFile(flag, path, format));
  {
    absl::MutexLock lock(&file->mu_);
    file->entries_ = std::make_shared<const std::vector<Entry>>(*std::move(entries));
    file->stamp_ = *stamp;
    file->loads_ = 1;
  }
  TokenFile* self = file.get();
  file->reloader_ = std::thread([self, reload_interval] {
    while (true) {
      {
        absl::MutexLock lock(&self->mu_);
        self->mu_.AwaitWithTimeout(absl::Condition(&self->stopping_), reload_interval);
        if (self->stopping_) return;
      }
      self->ReloadIfChanged();
    }
  });
  return file;
}

TokenFile::~TokenFile() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (reloader_.joinable()) reloader_.join();
}

void TokenFile::ReloadIfChanged() {
  // The stat and the read happen with mu_ released: Find() never waits on the disk.
  auto stamp = StampOf(path_);
  {
    absl::MutexLock lock(&mu_);
    if (!stamp.ok()) {
      if (stamp_.size != -2) {
        LogLine(absl::StrCat(flag_, " '", path_, "': cannot stat (", stamp.status().message(),
                             "); keeping the tokens loaded before"));
      }
      stamp_.size = -2;  // log once until the file comes back
      return;
    }
    if (*stamp == stamp_) return;
  }
  auto entries = Parse(flag_, path_, format_);
  absl::MutexLock lock(&mu_);
  stamp_ = *stamp;
  if (!entries.ok()) {
    LogLine(absl::StrCat(entries.status().message(), "; keeping the tokens loaded before"));
    return;
  }
  const size_t count = entries->size();
  entries_ = std::make_shared<const std::vector<Entry>>(*std::move(entries));
  ++loads_;
  LogLine(absl::StrCat("reloaded ", flag_, " '", path_, "': ", count, " token(s)"));
}

int TokenFile::loads() const {
  absl::MutexLock lock(&mu_);
  return loads_;
}

std::optional<Role> TokenFile::Find(absl::string_view token) const {
  std::shared_ptr<const std::vector<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    entries = entries_;
  }
  // The digest hides the token's length and content from the comparison's timing; every
  // entry is compared, so which one matches does not show either.
  const TokenDigest digest = Digest(token);
  int found = -1;
  for (size_t i = 0; i < entries->size(); ++i) {
    const bool same = CRYPTO_memcmp(digest.data(), (*entries)[i].digest.data(), digest.size()) == 0;
    found = same ? static_cast<int>(i) : found;
  }
  if (found < 0) return std::nullopt;
  return (*entries)[static_cast<size_t>(found)].role;
}

absl::string_view BearerToken(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return {};
  absl::string_view value(it->second.data(), it->second.size());
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "Bearer ")) return {};
  return absl::StripAsciiWhitespace(value.substr(7));
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::Create(const Options& options) {
  std::unique_ptr<Authorizer> authorizer(new Authorizer());
  if (!options.tokens_file.empty()) {
    auto file = TokenFile::Open("--tokens_file", options.tokens_file, TokenFile::Format::kRoles,
                                options.reload_interval);
    if (!file.ok()) return file.status();
    authorizer->tokens_ = *std::move(file);
  }
  if (!options.worker_token_file.empty()) {
    auto file = TokenFile::Open("--worker_token_file", options.worker_token_file,
                                TokenFile::Format::kTokens, options.reload_interval);
    if (!file.ok()) return file.status();
    authorizer->workers_ = *std::move(file);
  }
  authorizer->require_worker_certificate_ = options.require_worker_certificate;
  return authorizer;
}

absl::StatusOr<Caller> Authorizer::Authorize(const grpc::ServerContextBase& context,
                                             absl::string_view method) const {
  const std::optional<Permission> permission = RequiredPermission(method);
  if (!permission) {
    return absl::PermissionDeniedError(absl::StrCat("no access rule for ", method));
  }
  const absl::string_view token = BearerToken(context);
  if (*permission == Permission::kWorker) {
    if (require_worker_certificate_ && !context.auth_context()->IsPeerAuthenticated()) {
      return absl::UnauthenticatedError(
          "a worker must present a client certificate signed by the coordinator's "
          "--tls_client_ca (metatrain-worker --tls_cert, --tls_key)");
    }
    if (workers_ != nullptr) {
      if (token.empty()) {
        return absl::UnauthenticatedError(
            "no worker join token: metatrain-worker --token_file (or $METATRAIN_WORKER_TOKEN)");
      }
      if (!workers_->Find(token)) return absl::UnauthenticatedError("unknown worker join token");
    }
    return Caller{};
  }
  if (tokens_ == nullptr) return Caller{};
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no bearer token: send metadata \"authorization: Bearer <token>\" (metactl --token_file "
        "or $METATRAIN_TOKEN)");
  }
  const std::optional<Role> role = tokens_->Find(token);
  if (!role) return absl::UnauthenticatedError("unknown bearer token");
  if (*permission == Permission::kAdmin && *role != Role::kAdmin) {
    return absl::PermissionDeniedError(absl::StrCat("a read token may not call ",
                                                    method.substr(method.rfind('/') + 1),
                                                    ": it needs an admin token"));
  }
  const TokenDigest digest = Digest(token);
  // Half the digest of the token: distinct per token, says nothing of it.
  return Caller{absl::BytesToHexString(absl::string_view(
                    reinterpret_cast<const char*>(digest.data()), digest.size() / 2)),
                role};
}

}  // namespace metatrain::coordinator
