// The command-line reader every binary uses: absl's flag syntax, one-line errors naming the
// flag, environment defaults, aliases, and a --help made of this program's flags only.

#include "common/cli/flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "where to connect");
ABSL_FLAG(int, count, 3, "how many");
ABSL_FLAG(bool, loud, false, "say more");
ABSL_FLAG(std::string, output, "", "the file to write");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "seed; unset: the job's");
ABSL_FLAG(absl::Duration, wait, absl::Seconds(15), "how long to wait");
ABSL_FLAG(int, verbose_help, 0,
          "a flag whose help text is far longer than one line of a terminal, so that the help "
          "printer has to wrap it at word boundaries and indent every continuation line the "
          "same way as the first one, without cutting a word");

namespace metatrain::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kEnv[] = "METATRAIN_CLI_TEST_ADDRESS";

Program TestProgram() {
  Program program;
  program.name = "cli-test";
  program.usage = "usage: cli-test [flags] ARGS";
  program.flag_files = {"tests/common/cli/flags_test.cc"};
  program.aliases = {{"o", "output"}, {"l", "loud"}, {"be-loud", "loud"}};
  program.env_defaults = {{"address", kEnv}};
  program.epilogue = "Commands: none.";
  return program;
}

absl::StatusOr<CommandLine> Parse(std::vector<std::string> args,
                                  const Program& program = TestProgram()) {
  args.insert(args.begin(), "cli-test");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  return ParseCommandLine(program, static_cast<int>(args.size()), argv.data());
}

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv(kEnv); }
  void TearDown() override { unsetenv(kEnv); }
  absl::FlagSaver saver_;  // every test starts from the defaults
};

TEST_F(FlagsTest, ReadsEveryAbslForm) {
  auto line = Parse({"first", "--count=7", "--address", "h:1", "second", "-loud", "--seed", "9",
                     "--wait=2s", "-o", "f.pt"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(line->positional, ElementsAre("first", "second"));
  EXPECT_EQ(absl::GetFlag(FLAGS_count), 7);
  EXPECT_EQ(absl::GetFlag(FLAGS_address), "h:1");
  EXPECT_TRUE(absl::GetFlag(FLAGS_loud));
  EXPECT_EQ(absl::GetFlag(FLAGS_seed), std::optional<uint64_t>(9));
  EXPECT_EQ(absl::GetFlag(FLAGS_wait), absl::Seconds(2));
  EXPECT_EQ(absl::GetFlag(FLAGS_output), "f.pt");
  EXPECT_TRUE(line->Has("count"));
  EXPECT_TRUE(line->Has("output"));  // given as -o: known by its canonical name
  EXPECT_FALSE(line->Has("o"));
  EXPECT_FALSE(line->help);
}

TEST_F(FlagsTest, BooleansNeverTakeTheNextArgument) {
  auto line = Parse({"--loud", "job.json"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_TRUE(absl::GetFlag(FLAGS_loud));
  EXPECT_THAT(line->positional, ElementsAre("job.json"));

  line = Parse({"--loud", "--noloud"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_FALSE(absl::GetFlag(FLAGS_loud));
  line = Parse({"--loud=false"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_FALSE(absl::GetFlag(FLAGS_loud));
  line = Parse({"--be-loud"});  // another spelling
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_TRUE(absl::GetFlag(FLAGS_loud));
  EXPECT_TRUE(line->Has("loud"));
}

TEST_F(FlagsTest, DoubleDashEndsTheFlags) {
  auto line = Parse({"--count", "2", "--", "--count", "-x"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_count), 2);
  EXPECT_THAT(line->positional, ElementsAre("--count", "-x"));
}

TEST_F(FlagsTest, ErrorsAreOneLineNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"--bogus"}, "unknown flag --bogus"},
           {{"a", "-x=1"}, "unknown flag -x"},
           {{"--count=abc"}, "invalid value \"abc\" for --count: expected an integer"},
           {{"--count", "99999999999"}, "invalid value \"99999999999\" for --count"},
           {{"--seed=-1"}, "invalid value \"-1\" for --seed: expected a non-negative integer"},
           {{"--wait", "soon"}, "invalid value \"soon\" for --wait"},
           {{"--loud=maybe"}, "invalid value \"maybe\" for --loud: expected true or false"},
           {{"--noloud=1"}, "--noloud takes no value"},
           {{"--nocount"}, "unknown flag --nocount"},
           {{"--count"}, "--count needs a value"},
       }) {
    auto line = Parse(c.args);
    ASSERT_FALSE(line.ok()) << c.args[0];
    EXPECT_EQ(line.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(line.status().message(), HasSubstr(c.message));
    EXPECT_THAT(line.status().message(), Not(HasSubstr("\n")));
  }
}

TEST_F(FlagsTest, FlagsOfOtherFilesAreUnknown) {
  Program other = TestProgram();
  other.flag_files = {"tools/other/main.cc"};
  other.env_defaults.clear();
  auto line = Parse({"--count=1"}, other);
  ASSERT_FALSE(line.ok());
  EXPECT_THAT(line.status().message(), HasSubstr("unknown flag --count"));
  EXPECT_THAT(HelpText(other), Not(HasSubstr("--count")));
}

TEST_F(FlagsTest, EnvironmentSetsTheDefaultAndTheCommandLineWins) {
  setenv(kEnv, "env-host:2", 1);
  auto line = Parse({});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_address), "env-host:2");
  EXPECT_FALSE(line->Has("address"));

  line = Parse({"--address=cli-host:3"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_address), "cli-host:3");

  setenv(kEnv, "", 1);  // empty: not set
  absl::SetFlag(&FLAGS_address, "127.0.0.1:50051");
  line = Parse({});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_address), "127.0.0.1:50051");
}

TEST_F(FlagsTest, HelpAndVersionWin) {
  for (const char* help : {"--help", "-h", "--helpfull", "--helpshort"}) {
    auto line = Parse({"--count=1", help, "--bogus"});
    ASSERT_TRUE(line.ok()) << help << ": " << line.status();
    EXPECT_TRUE(line->help) << help;
  }
  auto line = Parse({"--version"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_TRUE(line->version);
  EXPECT_THAT(VersionText(TestProgram()), ::testing::StartsWith("cli-test "));
}

TEST_F(FlagsTest, HelpListsThisProgramsFlagsWithDefaults) {
  const std::string help = HelpText(TestProgram());
  EXPECT_THAT(help, ::testing::StartsWith("usage: cli-test [flags] ARGS\n\nFlags:\n"));
  EXPECT_THAT(help, HasSubstr("  --address (default: \"127.0.0.1:50051\", or $" +
                              std::string(kEnv) + " if set)\n      where to connect\n"));
  EXPECT_THAT(help, HasSubstr("  --count (default: 3)\n      how many\n"));
  EXPECT_THAT(help, HasSubstr("  -l, --[no]loud, --be-loud (default: false)\n      say more\n"));
  EXPECT_THAT(help, HasSubstr("  -o, --output (default: \"\")\n"));
  EXPECT_THAT(help, HasSubstr("  --seed (default: unset)\n"));
  EXPECT_THAT(help, HasSubstr("  --wait (default: 15s)\n"));
  EXPECT_THAT(help, HasSubstr("\nCommands: none.\n"));
  // Sorted by name; absl's own flags are not this program's.
  EXPECT_LT(help.find("--address"), help.find("--count"));
  EXPECT_LT(help.find("--count"), help.find("--wait"));
  EXPECT_THAT(help, Not(HasSubstr("flagfile")));
  EXPECT_THAT(help, Not(HasSubstr("helppackage")));

  // A value that differs from the default (here from the environment) is shown too.
  absl::SetFlag(&FLAGS_count, 5);
  EXPECT_THAT(HelpText(TestProgram()), HasSubstr("  --count (default: 3; now: 5)\n"));
}

TEST_F(FlagsTest, LongHelpTextIsWrappedAndIndented) {
  const std::string help = HelpText(TestProgram());
  const size_t at = help.find("  --verbose_help (default: 0)\n");
  ASSERT_NE(at, std::string::npos) << help;
  std::vector<std::string> lines = absl::StrSplit(help.substr(at), '\n');
  ASSERT_GE(lines.size(), 4u);
  std::string text;
  size_t i = 1;
  for (; i < lines.size() && lines[i].rfind("  -", 0) != 0; ++i) {
    EXPECT_LE(lines[i].size(), 100u) << lines[i];
    EXPECT_EQ(lines[i].substr(0, 6), "      ") << lines[i];
    text += (text.empty() ? "" : " ") + lines[i].substr(6);
  }
  EXPECT_GE(i, 3u) << "wrapped into at least two lines";
  EXPECT_THAT(text,
              HasSubstr("so that the help printer has to wrap it at word boundaries and indent"));
}

}  // namespace
}  // namespace metatrain::cli
