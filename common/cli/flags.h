#ifndef METATRAIN_COMMON_CLI_FLAGS_H_
#define METATRAIN_COMMON_CLI_FLAGS_H_

// The command line of every metatrain binary: flags are absl flags (ABSL_FLAG), defined in
// the binary's own main .cc, and this library reads argv into them and prints --help.
//
// NOTE [Why not absl::ParseCommandLine]: absl's parser exits with status 1 after --help,
// and on a bad flag prints several lines ("ERROR: ...", then "Try --helpfull ...") before
// exiting 1. Our binaries promise one line on stderr and exit status 2 for a usage error,
// and 0 for --help (docs/service.md). So ParseCommandLine here walks argv itself, with
// absl's rules (--flag=value, --flag value, -flag, --bool, --nobool, "--" ends the
// flags, flags and positional arguments in any order), and sets each flag through absl's
// own reflection (CommandLineFlag::ParseFrom), so the flag types, their parsers and
// defaults are absl's. absl's usage config is set as well, so that absl's own help
// routines, if anything calls them, show the same flags.
//
// Flags must be defined in a binary's main .cc (or a flags file beside it), never in a
// library that two binaries link: absl aborts at start-up on a flag defined twice.

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace metatrain::cli {

// Exit status for a usage error (bad flag, bad value, wrong arguments), on every binary.
inline constexpr int kUsageExitCode = 2;

struct Program {
  // "metatrain-worker": the start of every error line, and what --version prints.
  std::string name;
  // The top of --help: usage line(s), then what the program does. Ends without '\n'.
  std::string usage;
  // The source files whose flags are this program's, as repository-relative paths
  // ("worker/main.cc"). --help lists exactly the flags defined in them; every other
  // registered flag (absl's internal ones included) is unknown on the command line.
  std::vector<std::string> flag_files;
  // Printed after the flags by --help (metactl's commands, exit codes). May be empty.
  std::string epilogue;
  // Other spellings of a flag: {"o", "output"} makes "-o FILE" mean "--output FILE".
  std::vector<std::pair<std::string, std::string>> aliases;
  // Flags whose value comes from an environment variable when it is set and not empty;
  // the command line still wins: {"coordinator", "METATRAIN_COORDINATOR"}.
  std::vector<std::pair<std::string, std::string>> env_defaults;
};

struct CommandLine {
  std::vector<std::string> positional;   // in order, without argv[0]
  absl::flat_hash_set<std::string> set;  // canonical names of the flags given on it
  bool help = false;                     // --help, -h, --helpfull or --helpshort
  bool version = false;                  // --version

  bool Has(absl::string_view flag) const { return set.contains(flag); }
};

// Applies `program.env_defaults`, then reads `argv` (argv[0] is the program) into the
// flags. Stops at --help or --version (they win over whatever follows). INVALID_ARGUMENT
// with one line naming the flag for an unknown flag, a malformed value or a missing one.
// Call once, from main, before any other thread reads the flags.
absl::StatusOr<CommandLine> ParseCommandLine(const Program& program, int argc, char** argv);

// What --help prints: the usage, this program's flags (sorted, each with its default and
// help text), the epilogue.
std::string HelpText(const Program& program);

// What --version prints: "<name> <version>".
std::string VersionText(const Program& program);

// ParseCommandLine for binaries without an error format of their own: prints the help or
// the version to stdout and exits 0, or prints "<name>: <message> (see <name> --help)" on
// stderr and exits kUsageExitCode. Otherwise returns the command line.
CommandLine ParseCommandLineOrExit(const Program& program, int argc, char** argv);

// Prints "<name>: <message> (see <name> --help)" on stderr and returns kUsageExitCode,
// for the checks a binary makes on its flags' values after parsing.
int UsageError(const Program& program, absl::string_view message);

}  // namespace metatrain::cli

#endif  // METATRAIN_COMMON_CLI_FLAGS_H_
