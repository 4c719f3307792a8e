#include "common/cli/flags.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/version/version.h"

namespace metatrain::cli {
namespace {

constexpr int kHelpWidth = 100;

// Whether a flag's __FILE__ is one of `files`. The compiler may see the source by an
// absolute path or, through ccache's base_dir, a relative one ("../worker/main.cc"), so a
// file matches as a whole path component suffix.
bool DefinedIn(absl::string_view filename, const std::vector<std::string>& files) {
  for (const std::string& file : files) {
    if (filename == file || absl::EndsWith(filename, absl::StrCat("/", file))) return true;
  }
  return false;
}

std::string NormalizeFilename(absl::string_view filename, const std::vector<std::string>& files) {
  for (const std::string& file : files) {
    if (filename == file || absl::EndsWith(filename, absl::StrCat("/", file))) return file;
  }
  return std::string(filename);
}

// The program's own flag called `name`, or null: flags defined anywhere else (absl's own
// usage flags, should a library bring them in) are not this program's.
absl::CommandLineFlag* FindOwnFlag(const Program& program, absl::string_view name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || flag->IsRetired() || !DefinedIn(flag->Filename(), program.flag_files)) {
    return nullptr;
  }
  return flag;
}

std::string Canonical(const Program& program, absl::string_view name) {
  for (const auto& [alias, canonical] : program.aliases) {
    if (alias == name) return canonical;
  }
  return std::string(name);
}

// What a flag's value must look like, for the error line; empty when absl's types give no
// short answer.
std::string Expected(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<bool>()) return "true or false";
  if (flag.IsOfType<int32_t>() || flag.IsOfType<int64_t>() || flag.IsOfType<int16_t>()) {
    return "an integer";
  }
  if (flag.IsOfType<uint32_t>() || flag.IsOfType<uint64_t>() || flag.IsOfType<uint16_t>() ||
      flag.IsOfType<std::optional<uint64_t>>()) {
    return "a non-negative integer";
  }
  if (flag.IsOfType<double>() || flag.IsOfType<float>()) return "a number";
  if (flag.IsOfType<absl::Duration>()) return "a duration such as 30s, 500ms or 1m30s";
  return "";
}

absl::Status SetFlag(absl::CommandLineFlag& flag, absl::string_view spelled,
                     absl::string_view value) {
  std::string error;
  if (flag.ParseFrom(value, &error)) return absl::OkStatus();
  const std::string expected = Expected(flag);
  return absl::InvalidArgumentError(absl::StrCat("invalid value \"", value, "\" for ", spelled,
                                                 expected.empty() ? "" : ": expected ", expected));
}

void ConfigureAbslUsage(const Program& program) {
  absl::FlagsUsageConfig config;
  const std::vector<std::string> files = program.flag_files;
  auto own = [files](absl::string_view filename) { return DefinedIn(filename, files); };
  config.contains_help_flags = own;
  config.contains_helpshort_flags = own;
  config.contains_helppackage_flags = own;
  config.normalize_filename = [files](absl::string_view filename) {
    return NormalizeFilename(filename, files);
  };
  const std::string version = VersionText(program);
  config.version_string = [version] { return version + "\n"; };
  absl::SetFlagsUsageConfig(config);
}

// Appends `text` wrapped at kHelpWidth columns, every line indented by `indent`.
void AppendWrapped(std::string* out, absl::string_view text, int indent) {
  const std::string pad(indent, ' ');
  int column = 0;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > 0 && column + 1 + static_cast<int>(word.size()) > kHelpWidth) {
      out->append("\n");
      column = 0;
    }
    if (column == 0) {
      out->append(pad);
      column = indent;
    } else {
      out->append(" ");
      ++column;
    }
    out->append(word.data(), word.size());
    column += static_cast<int>(word.size());
  }
  out->append("\n");
}

std::string ShowValue(const absl::CommandLineFlag& flag, const std::string& value) {
  if (flag.IsOfType<std::string>()) return absl::StrCat("\"", value, "\"");
  return value.empty() ? "unset" : value;
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(const Program& program, int argc, char** argv) {
  ConfigureAbslUsage(program);
  for (const auto& [name, variable] : program.env_defaults) {
    const char* env = std::getenv(variable.c_str());
    if (env == nullptr || *env == '\0') continue;
    absl::CommandLineFlag* flag = FindOwnFlag(program, name);
    if (flag == nullptr) {
      return absl::InternalError(absl::StrCat("no flag --", name, " for $", variable));
    }
    if (absl::Status set = SetFlag(*flag, absl::StrCat("--", name, " in $", variable), env);
        !set.ok()) {
      return set;
    }
  }

  CommandLine line;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") {
      line.positional.insert(line.positional.end(), argv + i + 1, argv + argc);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      line.positional.emplace_back(arg);
      continue;
    }
    // absl accepts one dash as well as two.
    const absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view value = has_value ? body.substr(eq + 1) : absl::string_view();
    // The flag as the user wrote it, for the error line: "-o", "--threads".
    const absl::string_view spelled =
        has_value ? arg.substr(0, arg.size() - body.size() + eq) : arg;
    const std::string name = Canonical(program, body.substr(0, eq));
    if (name == "help" || name == "h" || name == "helpfull" || name == "helpshort") {
      line.help = true;
      return line;
    }
    if (name == "version") {
      line.version = true;
      return line;
    }
    absl::CommandLineFlag* flag = name.empty() ? nullptr : FindOwnFlag(program, name);
    bool negative = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* positive = FindOwnFlag(program, name.substr(2));
      if (positive != nullptr && positive->IsOfType<bool>()) {
        flag = positive;
        negative = true;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", spelled));
    }
    std::string text(value);
    if (flag->IsOfType<bool>()) {
      // A boolean never takes the next argument: "--watch job.json" keeps job.json.
      if (negative && has_value) {
        return absl::InvalidArgumentError(absl::StrCat(spelled, " takes no value"));
      }
      if (negative) text = "false";
      if (!negative && !has_value) text = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(spelled, " needs a value"));
      text = argv[++i];
    }
    if (absl::Status set = SetFlag(*flag, spelled, text); !set.ok()) return set;
    line.set.insert(std::string(flag->Name()));
  }
  return line;
}

std::string HelpText(const Program& program) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!flag->IsRetired() && DefinedIn(flag->Filename(), program.flag_files)) {
      flags.push_back(flag);
    }
  }
  std::sort(flags.begin(), flags.end(), [](absl::CommandLineFlag* a, absl::CommandLineFlag* b) {
    return a->Name() < b->Name();
  });

  std::string out = program.usage;
  out += "\n\nFlags:\n";
  for (absl::CommandLineFlag* flag : flags) {
    const std::string name(flag->Name());
    // "-o, --output", "--data_dir, --data-dir": one-letter spellings first, as is usual.
    std::vector<std::string> spellings;
    for (const auto& [alias, canonical] : program.aliases) {
      if (canonical == name && alias.size() == 1) spellings.push_back(absl::StrCat("-", alias));
    }
    spellings.push_back(absl::StrCat(flag->IsOfType<bool>() ? "--[no]" : "--", name));
    for (const auto& [alias, canonical] : program.aliases) {
      if (canonical == name && alias.size() > 1) spellings.push_back(absl::StrCat("--", alias));
    }
    std::string title = absl::StrCat("  ", absl::StrJoin(spellings, ", "),
                                     " (default: ", ShowValue(*flag, flag->DefaultValue()));
    for (const auto& [env_flag, variable] : program.env_defaults) {
      if (env_flag == name) absl::StrAppend(&title, ", or $", variable, " if set");
    }
    const std::string current = flag->CurrentValue();
    if (current != flag->DefaultValue()) {
      absl::StrAppend(&title, "; now: ", ShowValue(*flag, current));
    }
    absl::StrAppend(&out, title, ")\n");
    AppendWrapped(&out, flag->Help(), 6);
  }
  out += "  -h, --help (also --helpfull, --helpshort)\n      this help\n";
  out += "  --version\n      the program's version\n";
  if (!program.epilogue.empty()) absl::StrAppend(&out, "\n", program.epilogue);
  if (out.back() != '\n') out += "\n";
  return out;
}

std::string VersionText(const Program& program) {
  return absl::StrCat(program.name, " ", Version());
}

int UsageError(const Program& program, absl::string_view message) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: %s (see %s --help)\n", program.name.c_str(),
               std::string(message).c_str(), program.name.c_str());
  return kUsageExitCode;
}

CommandLine ParseCommandLineOrExit(const Program& program, int argc, char** argv) {
  absl::StatusOr<CommandLine> line = ParseCommandLine(program, argc, argv);
  if (!line.ok()) std::exit(UsageError(program, line.status().message()));
  if (line->help || line->version) {
    const std::string text = line->help ? HelpText(program) : VersionText(program) + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    std::exit(0);
  }
  return *std::move(line);
}

}  // namespace metatrain::cli
