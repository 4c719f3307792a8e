#include "tests/testing/throwaway_certs.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace metatrain::testing {

absl::Status MakeThrowawayCredentials(const std::string& dir, const std::string& extra_args) {
  const char* env = std::getenv("METATRAIN_SOURCE_DIR");
  const std::string source = env != nullptr && *env != '\0' ? env : METATRAIN_CERTS_SOURCE_DIR;
  const std::string command = absl::StrCat("bash '", source, "/deploy/tls/make-certs.sh' '", dir,
                                           "' ", extra_args, " 2>/dev/null");
  if (std::system(command.c_str()) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("failed: ", command));
  }
  return absl::OkStatus();
}

std::string ReadTrimmed(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripTrailingAsciiWhitespace(text.str()));
}

}  // namespace metatrain::testing
