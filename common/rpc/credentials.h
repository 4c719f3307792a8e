#ifndef METATRAIN_COMMON_RPC_CREDENTIALS_H_
#define METATRAIN_COMMON_RPC_CREDENTIALS_H_

// Transport security and bearer tokens for every metatrain gRPC channel, in one place: the
// coordinator's server credentials (TLS, optionally verifying client certificates), the
// worker's and metactl's channel credentials (TLS against a CA, optionally presenting a
// client certificate), and the bearer token a client sends with each call. docs/security.md
// says how the pieces fit.
//
// Errors name the flag that the binaries use for each file (--tls_cert, --tls_key, --tls_ca,
// --tls_client_ca, --token_file): the flags have these names on all three binaries, so a
// message from here is the one line a user sees. No error message ever contains the bytes
// of a key or a token.

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class ClientContext;
}

namespace metatrain::rpc {

// The coordinator's side. Exactly one of `insecure` and (cert_file, key_file) is set.
struct ServerTlsOptions {
  std::string cert_file;  // PEM certificate chain the server presents (--tls_cert)
  std::string key_file;   // its PEM private key (--tls_key)
  // PEM CA bundle (--tls_client_ca). When set, a client certificate is requested and, when
  // presented, must chain to this CA or the handshake fails; whether a call *needs* one is
  // decided per RPC (workers do: coordinator/rpc/auth.h). Empty: none is requested.
  std::string client_ca_file;
  bool insecure = false;  // plaintext (--insecure)
};

// The clients' side (worker, metactl).
struct ClientTlsOptions {
  std::string ca_file;      // PEM CA bundle that signed the server (--tls_ca); empty: system roots
  std::string cert_file;    // client certificate for mutual TLS (--tls_cert), with key_file
  std::string key_file;     // (--tls_key)
  std::string server_name;  // name to check in the server's certificate instead of the host
  bool insecure = false;    // plaintext (--insecure)
};

// Reads and checks the files (they exist, parse as PEM, the key matches the certificate)
// and builds the credentials. INVALID_ARGUMENT naming the flag and the path otherwise, or
// when neither TLS files nor `insecure` (or both) are given.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsOptions& options);

// Channel arguments `options` needs (the server-name override), added to `args`.
void AddChannelArguments(const ClientTlsOptions& options, grpc::ChannelArguments* args);

// A bearer token from a file: the first line that is neither blank nor a '#' comment, with
// surrounding white space removed. INVALID_ARGUMENT naming --token_file when the file cannot
// be read, holds no token, or the token has characters a header cannot carry.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Adds "authorization: Bearer <token>" to the call; nothing for an empty token.
void AttachToken(grpc::ClientContext* context, const std::string& token);

// Whether a token can travel in a header: printable ASCII without white space.
bool IsValidToken(const std::string& token);

}  // namespace metatrain::rpc

#endif  // METATRAIN_COMMON_RPC_CREDENTIALS_H_
