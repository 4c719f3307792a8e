#ifndef METATRAIN_COMMON_STATUS_STATUS_MACROS_H_
#define METATRAIN_COMMON_STATUS_STATUS_MACROS_H_

// RETURN_IF_ERROR / ASSIGN_OR_RETURN: Abseil 20220623 (Debian 12) does not ship them.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define METATRAIN_STATUS_CONCAT_INNER_(a, b) a##b
#define METATRAIN_STATUS_CONCAT_(a, b) METATRAIN_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    ::absl::Status metatrain_status_ = (expr);             \
    if (!metatrain_status_.ok()) return metatrain_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  METATRAIN_ASSIGN_OR_RETURN_IMPL_(METATRAIN_STATUS_CONCAT_(statusor_, __LINE__), lhs, expr)

#define METATRAIN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()

#endif  // METATRAIN_COMMON_STATUS_STATUS_MACROS_H_
