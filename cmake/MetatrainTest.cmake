# metatrain_add_test(NAME name SOURCES a.cc b.cc DEPS lib1 lib2 [LABELS l] [TIMEOUT s])
# One helper declares every test: a GoogleTest binary, registered with ctest per test case.
include(GoogleTest)
function(metatrain_add_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} metatrain_testing GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  # The environment goes in through `env` as the tests' launcher: gtest_discover_tests
  # (CMake 3.25) flattens a multi-entry ENVIRONMENT property, so only one entry survives.
  # OpenBLAS reads its thread count at load time, before any test code runs.
  set_target_properties(${ARG_NAME} PROPERTIES CROSSCOMPILING_EMULATOR
    "/usr/bin/env;OPENBLAS_NUM_THREADS=1;METATRAIN_SOURCE_DIR=${PROJECT_SOURCE_DIR};METATRAIN_BINARY_DIR=${PROJECT_BINARY_DIR}")
  set(properties TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    list(APPEND properties LABELS ${ARG_LABELS})
  endif()
  gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
endfunction()

# metatrain_add_script_test(NAME name COMMAND program [args...] [LABELS l] [TIMEOUT s])
# A test that is a program (a shell script under tests/), with the same environment as the
# GoogleTest binaries. Exit code 77 marks it skipped (a prerequisite the machine lacks).
function(metatrain_add_script_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_COMMAND})
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} SKIP_RETURN_CODE 77
    ENVIRONMENT "OPENBLAS_NUM_THREADS=1;METATRAIN_SOURCE_DIR=${PROJECT_SOURCE_DIR};METATRAIN_BINARY_DIR=${PROJECT_BINARY_DIR}")
  if(ARG_LABELS)
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
