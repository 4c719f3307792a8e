#include "tests/e2e/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace metatrain::e2e {

std::string BinaryPath(const std::string& relative) {
  const char* dir = std::getenv("METATRAIN_BINARY_DIR");
#ifdef METATRAIN_TEST_BINARY_DIR
  if (dir == nullptr || *dir == '\0') dir = METATRAIN_TEST_BINARY_DIR;
#endif
  return absl::StrCat(dir == nullptr ? "." : dir, "/", relative);
}

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/", prefix, "XXXXXX");
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  const char* made = mkdtemp(buf.data());
  return made == nullptr ? std::string() : std::string(made);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::string& log_path, bool stdout_pipe) {
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  int pipe_fds[2] = {-1, -1};
  if (stdout_pipe) {
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group: killing the group stops everything the child started.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawn(&child->pid_, argv[0].c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (stdout_pipe) {
    close(pipe_fds[1]);
    child->stdout_fd_ = pipe_fds[0];
  }
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", std::strerror(rc)));
  }
  return child;
}

ChildProcess::~ChildProcess() {
  if (!reaped_ && pid_ > 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

void ChildProcess::Signal(int sig) {
  if (!reaped_ && pid_ > 0) kill(pid_, sig);
}

bool ChildProcess::running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (running()) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("process ", pid_, " still running"));
    }
    // No portable way to wait for a child with a timeout; poll its state.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

absl::StatusOr<std::string> ChildProcess::ReadLine(absl::Duration timeout) {
  if (stdout_fd_ < 0) return absl::FailedPreconditionError("stdout is not a pipe");
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return absl::DeadlineExceededError("no line from the child in time");
    pollfd p = {stdout_fd_, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char chunk[4096];
    ssize_t n = read(stdout_fd_, chunk, sizeof(chunk));
    if (n <= 0) return absl::UnavailableError("the child closed its stdout");
    buffer_.append(chunk, n);
  }
}

int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

namespace {

// Whether `flags` choose the transport (TLS files or --insecure).
bool ChoosesTransport(const std::vector<std::string>& flags) {
  for (const std::string& flag : flags) {
    if (absl::StartsWith(flag, "--tls_") || absl::StartsWith(flag, "--insecure") ||
        absl::StartsWith(flag, "--noinsecure")) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<Coordinator> StartCoordinator(const std::string& dir,
                                             const std::vector<std::string>& extra_flags,
                                             const std::string& listen) {
  std::vector<std::string> argv = {BinaryPath("coordinator/metatrain-coordinator"),
                                   "--listen=" + listen,
                                   absl::StrCat("--checkpoint_dir=", dir, "/checkpoints")};
  if (!ChoosesTransport(extra_flags)) argv.push_back("--insecure");
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  auto process = ChildProcess::Start(argv, dir + "/coordinator.log", /*stdout_pipe=*/true);
  if (!process.ok()) return process.status();
  Coordinator c;
  c.process = std::move(*process);
  while (true) {
    auto line = c.process->ReadLine(absl::Seconds(60));
    if (!line.ok()) {
      return absl::UnavailableError(absl::StrCat("coordinator did not report its port (",
                                                 line.status().message(), "); see ", dir,
                                                 "/coordinator.log"));
    }
    absl::string_view rest = *line;
    if (absl::ConsumePrefix(&rest, "listening on ")) {
      c.address = std::string(rest);
      return c;
    }
  }
}

absl::StatusOr<std::unique_ptr<ChildProcess>> StartWorker(
    const std::string& address, const std::string& log_path,
    const std::vector<std::string>& extra_flags, const std::vector<std::string>& prefix) {
  std::vector<std::string> argv = prefix;
  for (std::string arg : {BinaryPath("worker/metatrain-worker"), std::string("--coordinator"),
                          address, std::string("--threads"), std::string("1")}) {
    argv.push_back(std::move(arg));
  }
  if (!ChoosesTransport(extra_flags)) argv.push_back("--insecure");
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  return ChildProcess::Start(argv, log_path);
}

absl::Status WaitForWorkerConnected(const std::string& log_path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find(": connected to ") != std::string::npos) return absl::OkStatus();
    }
    // The worker's log is the only sign of its connection a client can see; poll it.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("worker did not connect; see ", log_path));
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  const std::string dir = MakeTempDir("metatrain-cmd-");
  if (dir.empty()) return absl::InternalError("mkdtemp failed");
  // stdout and stderr go to two files, read back once the command has exited.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string out_path = dir + "/out", err_path = dir + "/err";
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", std::strerror(rc)));
  }
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish in time"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  rmdir(dir.c_str());
  return result;
}

}  // namespace metatrain::e2e
