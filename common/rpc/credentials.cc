#include "common/rpc/credentials.h"

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/status/status_macros.h"

namespace metatrain::rpc {
namespace {

// Files this small are credentials; anything larger is a wrong path (a data set, /dev/zero).
constexpr std::streamsize kMaxCredentialFileBytes = 1 << 20;

absl::StatusOr<std::string> ReadSmallFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", path, "': cannot open (", std::strerror(errno), ")"));
  }
  std::string bytes(static_cast<size_t>(kMaxCredentialFileBytes) + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", path, "': cannot read"));
  }
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (static_cast<std::streamsize>(bytes.size()) > kMaxCredentialFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", path, "': larger than 1 MiB, not a credentials file"));
  }
  return bytes;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// The first certificate of a PEM file (a chain or a CA bundle), or null.
X509Ptr FirstCertificate(const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr, &X509_free);
  ERR_clear_error();
  return cert;
}

absl::StatusOr<std::string> ReadCertificates(absl::string_view flag, const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(flag, path));
  if (!FirstCertificate(pem)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", path, "': no PEM certificate in it"));
  }
  return pem;
}

// A certificate and its key: both parse, and the key is the certificate's.
struct KeyPair {
  std::string cert, key;
};
absl::StatusOr<KeyPair> ReadKeyPair(const std::string& cert_path, const std::string& key_path) {
  KeyPair pair;
  ASSIGN_OR_RETURN(pair.cert, ReadCertificates("--tls_cert", cert_path));
  ASSIGN_OR_RETURN(pair.key, ReadSmallFile("--tls_key", key_path));
  BioPtr bio = MemoryBio(pair.key);
  KeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr,
             &EVP_PKEY_free);
  ERR_clear_error();
  if (!key) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key '", key_path, "': no unencrypted PEM private key in it"));
  }
  X509Ptr cert = FirstCertificate(pair.cert);
  const bool matches = X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  if (!matches) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key '", key_path, "' is not the key of --tls_cert '", cert_path, "'"));
  }
  return pair;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  const bool any_file =
      !options.cert_file.empty() || !options.key_file.empty() || !options.client_ca_file.empty();
  if (options.insecure) {
    if (any_file) {
      return absl::InvalidArgumentError(
          "--insecure does not go with --tls_cert, --tls_key or --tls_client_ca");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        options.cert_file.empty() && options.key_file.empty()
            ? "pass --tls_cert FILE and --tls_key FILE to serve over TLS, or --insecure for "
              "plaintext (deploy/tls/make-certs.sh makes a throw-away set)"
            : "--tls_cert and --tls_key go together");
  }
  ASSIGN_OR_RETURN(KeyPair pair, ReadKeyPair(options.cert_file, options.key_file));
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({pair.key, pair.cert});
  if (!options.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadCertificates("--tls_client_ca", options.client_ca_file));
    // Requested and verified when presented, but not required at the handshake: job API
    // clients may come with a token alone, while worker sessions need a verified
    // certificate (checked per RPC, coordinator/rpc/auth.h).
    ssl.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientTlsOptions& options) {
  const bool any_file =
      !options.ca_file.empty() || !options.cert_file.empty() || !options.key_file.empty();
  if (options.insecure) {
    if (any_file) {
      return absl::InvalidArgumentError(
          "--insecure does not go with --tls_ca, --tls_cert or --tls_key");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadCertificates("--tls_ca", options.ca_file));
  }
  if (!options.cert_file.empty()) {
    ASSIGN_OR_RETURN(KeyPair pair, ReadKeyPair(options.cert_file, options.key_file));
    ssl.pem_cert_chain = std::move(pair.cert);
    ssl.pem_private_key = std::move(pair.key);
  }
  return grpc::SslCredentials(ssl);
}

void AddChannelArguments(const ClientTlsOptions& options, grpc::ChannelArguments* args) {
  if (!options.insecure && !options.server_name.empty()) {
    args->SetSslTargetNameOverride(options.server_name);
  }
}

bool IsValidToken(const std::string& token) {
  if (token.empty()) return false;
  for (const char c : token) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile("--token_file", path));
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::string token(line);
    if (!IsValidToken(token)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--token_file '", path,
          "': the token must be printable ASCII without spaces (one token on its line)"));
    }
    return token;
  }
  return absl::InvalidArgumentError(absl::StrCat("--token_file '", path, "': no token in it"));
}

void AttachToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

}  // namespace metatrain::rpc
