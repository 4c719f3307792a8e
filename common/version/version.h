#ifndef METATRAIN_COMMON_VERSION_VERSION_H_
#define METATRAIN_COMMON_VERSION_VERSION_H_

// The metatrain version of this build (CMake's PROJECT_VERSION), in one place: `--version`
// prints it, workers announce it in Hello.version, and the coordinator admits only workers
// of its own version (docs/service.md, "The session protocol").

namespace metatrain {

// E.g. "0.1.0". Never empty.
const char* Version();

}  // namespace metatrain

#endif  // METATRAIN_COMMON_VERSION_VERSION_H_
