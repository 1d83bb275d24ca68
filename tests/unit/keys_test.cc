// common/keys.h: key files (modes, owner, refusing to overwrite, bad content), the text form, and
// the HKDF derivation (a known answer from RFC 5869, and one key per label).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/keys.h"

namespace minihv::keys {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "minihv-keys-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

// A file with `content` and `mode`, as a user might have made it by hand.
std::string put_file(const fs::path& p, const std::string& content, mode_t mode = 0600) {
  std::ofstream(p) << content;
  ::chmod(p.c_str(), mode);
  return p.string();
}

const std::string kHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(KeyFile, WriteThenReadGivesTheSameKeyWithPrivateModes) {
  TempDir dir;
  const fs::path path = dir.path / "etc" / "minihv" / "cluster.key";
  auto written = write_new_key(path.string());
  ASSERT_TRUE(written) << written.message();
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(mode_of(dir.path / "etc"), 0700u);
  EXPECT_EQ(mode_of(dir.path / "etc" / "minihv"), 0700u);
  EXPECT_EQ(fs::file_size(path), kKeyHexChars + 1);
  auto read = read_key(path.string());
  ASSERT_TRUE(read) << read.message();
  EXPECT_TRUE(*read == *written);
  EXPECT_EQ(std::distance(fs::directory_iterator(path.parent_path()), fs::directory_iterator()), 1)
      << "the temporary file must be gone";
}

TEST(KeyFile, TwoNewKeysDiffer) {
  TempDir dir;
  auto a = write_new_key((dir.path / "a").string());
  auto b = write_new_key((dir.path / "b").string());
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(*a == *b);
}

TEST(KeyFile, AGivenKeyIsWrittenPrivatelyAndReadBack) {
  TempDir dir;
  auto key = derive(*parse_text(kHex), migration_label("move-1"));
  ASSERT_TRUE(key) << key.message();
  const std::string path = (dir.path / "vm.movekey").string();
  ASSERT_TRUE(write_key(path, *key));
  EXPECT_EQ(mode_of(path), 0600u);
  auto read = read_key(path);
  ASSERT_TRUE(read) << read.message();
  EXPECT_TRUE(*read == *key);
  EXPECT_FALSE(write_key(path, *parse_text(kHex))) << "an existing key file is never replaced";
  EXPECT_TRUE(*read_key(path) == *key);
}

TEST(KeyFile, RefusesToOverwrite) {
  TempDir dir;
  const std::string path = put_file(dir.path / "cluster.key", kHex + "\n");
  auto again = write_new_key(path);
  ASSERT_FALSE(again);
  EXPECT_NE(again.message().find(path), std::string::npos) << again.message();
  EXPECT_NE(again.message().find("already exists"), std::string::npos) << again.message();
  auto kept = read_key(path);
  ASSERT_TRUE(kept) << kept.message();
  EXPECT_EQ(to_text(*kept), kHex + "\n");
}

TEST(KeyFile, RefusesPermissionsForGroupOrOthers) {
  TempDir dir;
  for (mode_t mode : {0640, 0604, 0620, 0660, 0644}) {
    const std::string path = put_file(dir.path / "k", kHex + "\n", mode);
    auto key = read_key(path);
    ASSERT_FALSE(key) << std::oct << mode;
    EXPECT_NE(key.message().find(path), std::string::npos) << key.message();
    EXPECT_NE(key.message().find("mode 0" + std::to_string(mode >> 6) + std::to_string((mode >> 3) & 7) +
                                 std::to_string(mode & 7)),
              std::string::npos)
        << key.message();
  }
  EXPECT_TRUE(read_key(put_file(dir.path / "k", kHex + "\n", 0400))) << "owner-only read is fine";
}

TEST(KeyFile, RefusesAFileOwnedBySomeoneElse) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file away";
  TempDir dir;
  const std::string path = put_file(dir.path / "k", kHex + "\n");
  ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
  auto key = read_key(path);
  ASSERT_FALSE(key);
  EXPECT_NE(key.message().find("owned by uid 65534"), std::string::npos) << key.message();
}

TEST(KeyFile, RefusesBadContentNamingThePath) {
  TempDir dir;
  const std::string cases[] = {
      "",                               // empty
      kHex.substr(1) + "\n",            // a digit short
      kHex + "0\n",                     // a digit long
      kHex + "\n\n",                    // two newlines
      kHex + "x",                       // not a newline at the end
      " " + kHex.substr(1) + "\n",      // a space
      kHex.substr(0, 63) + "g\n",       // not hex
      std::string(4096, 'a'),           // far too long
  };
  for (const std::string& content : cases) {
    const std::string path = put_file(dir.path / "k", content);
    auto key = read_key(path);
    EXPECT_FALSE(key) << "accepted: '" << content << "'";
    if (!key) {
      EXPECT_NE(key.message().find("key file " + path), std::string::npos) << key.message();
    }
  }
}

TEST(KeyFile, RefusesWhatIsNotAFile) {
  TempDir dir;
  auto missing = read_key((dir.path / "none").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.message().find("none"), std::string::npos);
  ::chmod(dir.path.c_str(), 0700);
  auto a_dir = read_key(dir.path.string());
  ASSERT_FALSE(a_dir);
  EXPECT_NE(a_dir.message().find("not a regular file"), std::string::npos) << a_dir.message();
}

TEST(KeyText, RoundTripsAndTakesEitherCase) {
  auto key = parse_text(kHex + "\n");
  ASSERT_TRUE(key) << key.message();
  EXPECT_EQ(key->bytes()[0x1f], 0x1f);
  EXPECT_EQ(to_text(*key), kHex + "\n");
  std::string upper = kHex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  auto up = parse_text(upper);  // and no newline
  ASSERT_TRUE(up) << up.message();
  EXPECT_TRUE(*up == *key);
}

std::string hex(std::span<const uint8_t> bytes) {
  std::string out;
  for (uint8_t b : bytes) out += "0123456789abcdef"[b >> 4], out += "0123456789abcdef"[b & 15];
  return out;
}

// RFC 5869 test case 3 (SHA-256, no salt, no info): the first 32 bytes of its OKM.
TEST(KeyDerivation, MatchesRfc5869WithoutSalt) {
  const std::vector<uint8_t> ikm(22, 0x0b);
  std::array<uint8_t, 32> okm{};
  ASSERT_TRUE(hkdf_sha256(ikm, "", okm));
  EXPECT_EQ(hex(okm), "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
}

TEST(KeyDerivation, EveryLabelGetsItsOwnKey) {
  auto cluster = parse_text(kHex);
  ASSERT_TRUE(cluster);
  auto rpc = derive(*cluster, kNodeRpcLabel);
  auto move1 = derive(*cluster, migration_label("1"));
  auto move2 = derive(*cluster, migration_label("2"));
  auto rpc_again = derive(*cluster, kNodeRpcLabel);
  ASSERT_TRUE(rpc && move1 && move2 && rpc_again);
  EXPECT_TRUE(*rpc == *rpc_again);
  EXPECT_FALSE(*rpc == *move1);
  EXPECT_FALSE(*move1 == *move2);
  EXPECT_FALSE(*rpc == *cluster);
  EXPECT_EQ(migration_label("ab12"), "minihv migration v1 ab12");
}

}  // namespace
}  // namespace minihv::keys
