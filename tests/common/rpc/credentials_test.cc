// The credentials library (common/rpc/credentials.h) on real files made by openssl
// (deploy/tls/make-certs.sh): good sets load, and each bad file is one message naming the
// flag, never the key's or the token's bytes.

#include "common/rpc/credentials.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/testing/throwaway_certs.h"

namespace metatrain::rpc {
namespace {

namespace fs = std::filesystem;

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "metatrain-creds-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    ASSERT_TRUE(testing::MakeThrowawayCredentials(dir_).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(CredentialsTest, ServerNeedsTlsFilesOrInsecure) {
  ServerTlsOptions options;
  auto none = MakeServerCredentials(options);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("--tls_cert"), std::string::npos);
  EXPECT_NE(none.status().message().find("--insecure"), std::string::npos);

  options.insecure = true;
  EXPECT_TRUE(MakeServerCredentials(options).ok());
  options.cert_file = dir_ + "/coordinator/tls.crt";
  EXPECT_FALSE(MakeServerCredentials(options).ok());  // --insecure with TLS files

  options.insecure = false;
  options.key_file = dir_ + "/coordinator/tls.key";
  EXPECT_TRUE(MakeServerCredentials(options).ok());
  options.client_ca_file = dir_ + "/coordinator/ca.crt";
  EXPECT_TRUE(MakeServerCredentials(options).ok());
}

TEST_F(CredentialsTest, BadFilesAreOneMessageNamingTheFlag) {
  const std::string key = dir_ + "/coordinator/tls.key";
  ServerTlsOptions options;
  options.cert_file = dir_ + "/coordinator/tls.crt";
  options.key_file = dir_ + "/worker/tls.key";
  auto mismatch = MakeServerCredentials(options);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("is not the key of --tls_cert"), std::string::npos);

  options.key_file = key;
  options.cert_file = key;  // a key where a certificate belongs
  auto not_cert = MakeServerCredentials(options);
  ASSERT_FALSE(not_cert.ok());
  EXPECT_NE(not_cert.status().message().find("--tls_cert"), std::string::npos);
  EXPECT_NE(not_cert.status().message().find("no PEM certificate"), std::string::npos);

  ClientTlsOptions client;
  client.ca_file = dir_ + "/missing.crt";
  auto missing = MakeChannelCredentials(client);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--tls_ca"), std::string::npos);
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos);

  client.ca_file = dir_ + "/worker/ca.crt";
  client.cert_file = dir_ + "/worker/tls.crt";
  auto half = MakeChannelCredentials(client);
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("go together"), std::string::npos);
  client.key_file = dir_ + "/worker/tls.key";
  EXPECT_TRUE(MakeChannelCredentials(client).ok());

  // No message quotes the key.
  std::ifstream in(key);
  std::string line, body;
  while (std::getline(in, line)) {
    if (line.rfind("-----", 0) != 0) body += line;
  }
  ASSERT_FALSE(body.empty());
  for (const auto& status : {mismatch.status(), not_cert.status()}) {
    EXPECT_EQ(std::string(status.message()).find(body.substr(0, 20)), std::string::npos);
  }
}

TEST_F(CredentialsTest, TokenFiles) {
  auto token = ReadTokenFile(dir_ + "/worker/token");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), 64u);
  // The coordinator's join-token file, comment first, serves as a worker's token file too.
  auto first = ReadTokenFile(dir_ + "/coordinator/worker-tokens");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, *token);

  const std::string path = dir_ + "/t";
  std::ofstream(path) << "# only a comment\n\n";
  EXPECT_NE(ReadTokenFile(path).status().message().find("no token"), std::string::npos);
  std::ofstream(path) << "two words\n";
  auto spaced = ReadTokenFile(path);
  ASSERT_FALSE(spaced.ok());
  EXPECT_NE(spaced.status().message().find("--token_file"), std::string::npos);
  EXPECT_EQ(std::string(spaced.status().message()).find("two words"), std::string::npos);
  EXPECT_FALSE(ReadTokenFile(dir_ + "/none").ok());
  EXPECT_TRUE(IsValidToken("abc-DEF_123.~"));
  EXPECT_FALSE(IsValidToken("tab\there"));
  EXPECT_FALSE(IsValidToken(""));
}

}  // namespace
}  // namespace metatrain::rpc
