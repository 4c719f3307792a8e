# metatrain_add_test(NAME name SOURCES a.cc b.cc DEPS lib1 lib2 [LABELS l] [TIMEOUT s])
# One helper declares every test: a GoogleTest binary, registered with ctest per test case.
include(GoogleTest)

# Under METATRAIN_SANITIZE every test, its discovery at build time and the processes a test
# starts run with the sanitizer options of tests/sanitizers/ (README there says why each).
set(METATRAIN_TEST_ENV OPENBLAS_NUM_THREADS=1 METATRAIN_SOURCE_DIR=${PROJECT_SOURCE_DIR}
  METATRAIN_BINARY_DIR=${PROJECT_BINARY_DIR})
if(METATRAIN_SANITIZE)
  set(sanitizers ${PROJECT_SOURCE_DIR}/tests/sanitizers)
  # allocator_may_return_null: an impossible allocation throws std::bad_alloc, which the code
  # turns into a status, as it does without ASan (ASan would abort instead).
  list(APPEND METATRAIN_TEST_ENV
    "ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1"
    "LSAN_OPTIONS=suppressions=${sanitizers}/lsan.supp:print_suppressions=0"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=${sanitizers}/ubsan.supp")
endif()

# Instrumented code runs a few times slower: give each test proportionally more time.
function(metatrain_test_timeout out seconds)
  if(METATRAIN_SANITIZE)
    math(EXPR seconds "${seconds} * 3")
  endif()
  set(${out} ${seconds} PARENT_SCOPE)
endfunction()
function(metatrain_add_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} metatrain_testing GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  metatrain_test_timeout(ARG_TIMEOUT ${ARG_TIMEOUT})
  # The environment goes in through `env` as the tests' launcher: gtest_discover_tests
  # (CMake 3.25) flattens a multi-entry ENVIRONMENT property, so only one entry survives.
  # OpenBLAS reads its thread count at load time, before any test code runs.
  set_target_properties(${ARG_NAME} PROPERTIES CROSSCOMPILING_EMULATOR
    "/usr/bin/env;${METATRAIN_TEST_ENV}")
  set(properties TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    list(APPEND properties LABELS ${ARG_LABELS})
  endif()
  metatrain_test_timeout(discovery_timeout 60)
  gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT ${discovery_timeout} PROPERTIES ${properties})
endfunction()

# metatrain_add_script_test(NAME name COMMAND program [args...] [LABELS l] [TIMEOUT s])
# A test that is a program (a shell script under tests/), with the same environment as the
# GoogleTest binaries. Exit code 77 marks it skipped (a prerequisite the machine lacks).
function(metatrain_add_script_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  metatrain_test_timeout(ARG_TIMEOUT ${ARG_TIMEOUT})
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_COMMAND})
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} SKIP_RETURN_CODE 77
    ENVIRONMENT "${METATRAIN_TEST_ENV}")
  if(ARG_LABELS)
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
