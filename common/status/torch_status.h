#ifndef METATRAIN_COMMON_STATUS_TORCH_STATUS_H_
#define METATRAIN_COMMON_STATUS_TORCH_STATUS_H_

// LibTorch reports errors by throwing; the rest of metatrain speaks absl::Status.
// Every call into LibTorch that can fail on user input goes through CatchTorch at the
// boundary of the meta-learning core, so no exception crosses into RPC code.

#include <c10/util/Exception.h>

#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace metatrain {

// Runs `fn` and converts any exception into INTERNAL (or `code`) with `context` prefixed;
// running out of memory (c10::OutOfMemoryError, std::bad_alloc) is RESOURCE_EXHAUSTED
// whatever `code` says. `fn` returns T, absl::Status, or absl::StatusOr<T>.
template <typename Fn>
auto CatchTorch(absl::string_view context, Fn&& fn,
                absl::StatusCode code = absl::StatusCode::kInternal) {
  using R = std::invoke_result_t<Fn>;
  auto fail_with = [&](absl::StatusCode with, const char* what) {
    std::string message(what);
    // c10::Error appends a C++ backtrace after the first line; users need the first line.
    auto newline = message.find('\n');
    if (newline != std::string::npos) message.resize(newline);
    return absl::Status(with, absl::StrCat(context, ": ", message));
  };
  auto fail = [&](const char* what) { return fail_with(code, what); };
  auto oom = [&](const char* what) {
    return fail_with(absl::StatusCode::kResourceExhausted, what);
  };
  if constexpr (std::is_same_v<R, absl::Status>) {
    try {
      return fn();
    } catch (const c10::OutOfMemoryError& e) {
      return oom(e.what());
    } catch (const std::bad_alloc& e) {
      return oom(e.what());
    } catch (const std::exception& e) {
      return fail(e.what());
    }
  } else if constexpr (std::is_void_v<R>) {
    try {
      fn();
      return absl::OkStatus();
    } catch (const c10::OutOfMemoryError& e) {
      return oom(e.what());
    } catch (const std::bad_alloc& e) {
      return oom(e.what());
    } catch (const std::exception& e) {
      return fail(e.what());
    }
  } else {
    using Out = std::conditional_t<std::is_convertible_v<R, absl::Status>, R, absl::StatusOr<R>>;
    try {
      return Out(fn());
    } catch (const c10::OutOfMemoryError& e) {
      return Out(oom(e.what()));
    } catch (const std::bad_alloc& e) {
      return Out(oom(e.what()));
    } catch (const std::exception& e) {
      return Out(fail(e.what()));
    }
  }
}

}  // namespace metatrain

#endif  // METATRAIN_COMMON_STATUS_TORCH_STATUS_H_
