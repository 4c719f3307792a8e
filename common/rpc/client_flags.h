#ifndef METATRAIN_COMMON_RPC_CLIENT_FLAGS_H_
#define METATRAIN_COMMON_RPC_CLIENT_FLAGS_H_

// The security flags of the coordinator's clients (metatrain-worker, metactl), with the same
// names, help and meaning in both: --tls_ca, --tls_cert, --tls_key, --tls_server_name,
// --insecure, --token_file. client_flags.cc is compiled into each of the two binaries
// rather than linked as a library (NOTE [Why not absl::ParseCommandLine] in
// common/cli/flags.h: a flag may be defined once per binary); list kClientFlagsFile in
// the program's flag_files.

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/rpc/credentials.h"

namespace metatrain::rpc {

inline constexpr char kClientFlagsFile[] = "common/rpc/client_flags.cc";

struct ClientSecurity {
  ClientTlsOptions tls;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string token_file;  // --token_file; empty when the token came from the environment
  std::string token;       // read from token_file now, or $<token_env>; may be empty
};

// Environment fallbacks of the flags above: $METATRAIN_TLS_CA, $METATRAIN_TLS_CLIENT_CERT,
// $METATRAIN_TLS_CLIENT_KEY, $METATRAIN_TLS_SERVER_NAME, and `token_file_env` for
// --token_file. For cli::Program::env_defaults.
std::vector<std::pair<std::string, std::string>> ClientSecurityEnvDefaults(
    const std::string& token_file_env);

// Reads the flags (after cli::ParseCommandLine). Without --token_file the token is the
// value of $`token_env` (empty when unset). INVALID_ARGUMENT naming the flag for a file that
// cannot be used, or for --insecure together with TLS files.
absl::StatusOr<ClientSecurity> ClientSecurityFromFlags(const std::string& token_env);

}  // namespace metatrain::rpc

#endif  // METATRAIN_COMMON_RPC_CLIENT_FLAGS_H_
