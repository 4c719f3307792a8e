#ifndef METATRAIN_TESTS_COMMON_META_PYTHON_UTIL_H_
#define METATRAIN_TESTS_COMMON_META_PYTHON_UTIL_H_

// Runs /usr/bin/python3 (the Debian one, with python3-torch) for interop tests.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace metatrain::testing {

inline bool PythonHasTorch() {
  static const bool has = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return has;
}

// Writes `script` to a file and runs it; returns stdout, sets *rc.
inline std::string RunPython(const std::string& script, int* rc) {
  char dir[] = "/tmp/metatrain_py_XXXXXX";
  const std::string d = mkdtemp(dir);
  const std::string path = d + "/script.py";
  std::ofstream(path) << script;
  std::string out;
  FILE* pipe = popen(("/usr/bin/python3 " + path + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::remove(path.c_str());
  rmdir(d.c_str());
  return out;
}

inline std::string TempDir() {
  char dir[] = "/tmp/metatrain_test_XXXXXX";
  return mkdtemp(dir);
}

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_COMMON_META_PYTHON_UTIL_H_
