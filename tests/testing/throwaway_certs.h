#ifndef METATRAIN_TESTS_TESTING_THROWAWAY_CERTS_H_
#define METATRAIN_TESTS_TESTING_THROWAWAY_CERTS_H_

// Throw-away TLS credentials and tokens for tests, made at test time with openssl by the
// same script users run (deploy/tls/make-certs.sh; its header lists the files).

#include <string>

#include "absl/status/statusor.h"

namespace metatrain::testing {

// Runs deploy/tls/make-certs.sh into `dir` (created). `extra_args` are passed on (e.g.
// "--force"). FAILED_PRECONDITION when openssl or the script fails.
absl::Status MakeThrowawayCredentials(const std::string& dir, const std::string& extra_args = "");

// The whole content of a file, without a trailing newline ("" when missing).
std::string ReadTrimmed(const std::string& path);

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_THROWAWAY_CERTS_H_
