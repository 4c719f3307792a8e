#include "common/rpc/client_flags.h"

#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that signed the coordinator's certificate; empty: the system's roots");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate for mutual TLS (with --tls_key); empty: none");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "name to check in the coordinator's certificate instead of the --coordinator host");
ABSL_FLAG(bool, insecure, false,
          "talk plaintext gRPC to a coordinator started with --insecure (no TLS)");
ABSL_FLAG(std::string, token_file, "",
          "file whose first line is the bearer token sent with every call (see "
          "docs/security.md)");

namespace metatrain::rpc {

std::vector<std::pair<std::string, std::string>> ClientSecurityEnvDefaults(
    const std::string& token_file_env) {
  return {{"tls_ca", "METATRAIN_TLS_CA"},
          {"tls_cert", "METATRAIN_TLS_CLIENT_CERT"},
          {"tls_key", "METATRAIN_TLS_CLIENT_KEY"},
          {"tls_server_name", "METATRAIN_TLS_SERVER_NAME"},
          {"token_file", token_file_env}};
}

absl::StatusOr<ClientSecurity> ClientSecurityFromFlags(const std::string& token_env) {
  ClientSecurity security;
  security.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  security.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  security.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  security.tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  security.tls.insecure = absl::GetFlag(FLAGS_insecure);
  ASSIGN_OR_RETURN(security.credentials, MakeChannelCredentials(security.tls));
  security.token_file = absl::GetFlag(FLAGS_token_file);
  if (!security.token_file.empty()) {
    ASSIGN_OR_RETURN(security.token, ReadTokenFile(security.token_file));
  } else if (const char* env = std::getenv(token_env.c_str()); env != nullptr && *env != '\0') {
    security.token = env;
    if (!IsValidToken(security.token)) {
      return absl::InvalidArgumentError(
          absl::StrCat("$", token_env, " must be printable ASCII without spaces"));
    }
  }
  return security;
}

}  // namespace metatrain::rpc
