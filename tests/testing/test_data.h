#ifndef METATRAIN_TESTS_TESTING_TEST_DATA_H_
#define METATRAIN_TESTS_TESTING_TEST_DATA_H_

// NOTE [Test data]
// Omniglot cannot be fetched at test time (CI and the development machines have no
// network, and code that downloads while testing is fragile), so the tests that read it
// look for a copy on disk, in this order:
//   1. $METATRAIN_DATA_DIR/omniglot, or $METATRAIN_DATA_DIR itself if it holds the zips;
//   2. <source dir>/../shared/data/omniglot (the shared copy beside the checkout).
// When neither has images_background.zip and images_evaluation.zip, such a test is
// SKIPPED with the places searched and where to get the data, so a fresh clone's
// `make test` passes. With METATRAIN_REQUIRE_DATA=1 (CI sets it in .ci/run) a missing
// copy FAILS the test instead: a CI machine that lost its data must not go green by
// running none of the data tests. Fashion-MNIST is not optional: deploy/install-deps.sh
// installs it from Debian.

#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace metatrain::testing {

// The folder holding images_background.zip and images_evaluation.zip, or NotFound whose
// message names every place searched and says where to get the data.
absl::StatusOr<std::string> FindOmniglot();

// FindOmniglot()'s folder, or the shared location when there is none (for messages and
// for tests that only need a path that does not hold the data).
std::string OmniglotDir();

// True when METATRAIN_REQUIRE_DATA is set to anything but "" or "0".
bool TestDataRequired();

}  // namespace metatrain::testing

// In a test body or a fixture's SetUp(): returns from the test, SKIPPED, when Omniglot is
// not found (see NOTE [Test data]); FAILED instead under METATRAIN_REQUIRE_DATA=1.
#define SKIP_WITHOUT_OMNIGLOT()                                                          \
  do {                                                                                   \
    const ::absl::StatusOr<std::string> metatrain_omniglot_ =                            \
        ::metatrain::testing::FindOmniglot();                                            \
    if (!metatrain_omniglot_.ok()) {                                                     \
      if (::metatrain::testing::TestDataRequired()) {                                    \
        FAIL() << metatrain_omniglot_.status().message()                                 \
               << " METATRAIN_REQUIRE_DATA is set, so a missing data set is a failure."; \
      }                                                                                  \
      GTEST_SKIP() << metatrain_omniglot_.status().message()                             \
                   << " Skipped; set METATRAIN_REQUIRE_DATA=1 to make this a failure.";  \
    }                                                                                    \
  } while (0)

#endif  // METATRAIN_TESTS_TESTING_TEST_DATA_H_
