#include "common/version/version.h"

#ifndef METATRAIN_VERSION
#error "METATRAIN_VERSION must be defined by the build (common/CMakeLists.txt)"
#endif

namespace metatrain {

const char* Version() { return METATRAIN_VERSION; }

}  // namespace metatrain
