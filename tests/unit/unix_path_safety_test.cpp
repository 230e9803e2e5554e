// Which directories root may create sockets below (policy/unix_path_safety.hpp).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "unix_path_safety.hpp"

namespace {

using sockbroker::policy::untrusted_directory;

struct stat directory(uid_t uid, gid_t gid, mode_t mode) {
  struct stat st {};
  st.st_mode = S_IFDIR | mode;
  st.st_uid = uid;
  st.st_gid = gid;
  return st;
}

TEST(UnixPathSafety, RootsClosedAndStickyDirectoriesAreTrusted) {
  EXPECT_EQ(untrusted_directory(directory(0, 0, 0755)), std::nullopt);  // /run
  EXPECT_EQ(untrusted_directory(directory(0, 0, 0700)), std::nullopt);
  EXPECT_EQ(untrusted_directory(directory(0, 0, 01777)), std::nullopt);  // /tmp
  EXPECT_EQ(untrusted_directory(directory(0, 33, 01775)), std::nullopt);
}

TEST(UnixPathSafety, AnythingAnotherUserCanChangeIsNot) {
  EXPECT_EQ(untrusted_directory(directory(1000, 0, 0755)), "is owned by uid 1000, not root");
  EXPECT_EQ(untrusted_directory(directory(1000, 0, 01777)), "is owned by uid 1000, not root");
  EXPECT_EQ(untrusted_directory(directory(0, 33, 0775)), "is writable by its group (gid 33) and not sticky");
  // The root group's members need not be root.
  EXPECT_EQ(untrusted_directory(directory(0, 0, 0775)), "is writable by its group (gid 0) and not sticky");
  EXPECT_EQ(untrusted_directory(directory(0, 0, 0757)), "is writable by everyone and not sticky");
  struct stat link {};
  link.st_mode = S_IFLNK | 0777;
  EXPECT_EQ(untrusted_directory(link), "is a symbolic link");
  struct stat file {};
  file.st_mode = S_IFREG | 0644;
  EXPECT_EQ(untrusted_directory(file), "is not a directory");
}

}  // namespace
