#include "ipc/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <gtest/gtest.h>

#include "base/io.h"
#include "tests/support/test_env.h"

namespace cellhouse::ipc {
namespace {

TEST(UnixSocketTest, ListenConnectAndPeerCredentials) {
  testing::TempDir dir;
  std::string path = dir.File("s");
  auto listener = ListenUnix({.path = path, .mode = 0660});
  ASSERT_TRUE(listener) << listener.error().message();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_TRUE(CheckListeningUnixStream(listener->get()));
  auto client = ConnectUnix(path);
  ASSERT_TRUE(client);
  UniqueFd server(accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());
  auto peer = GetPeerCredentials(server.get());
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->uid, getuid());
  EXPECT_EQ(peer->gid, getgid());
  EXPECT_EQ(peer->pid, getpid());
}

TEST(UnixSocketTest, StaleSocketReplacedLiveOneRefused) {
  testing::TempDir dir;
  std::string path = dir.File("s");
  {
    auto first = ListenUnix({.path = path});
    ASSERT_TRUE(first);
    auto second = ListenUnix({.path = path});
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message().find("another server is listening"), std::string::npos);
  }
  // The first listener is closed: its file is stale now.
  auto again = ListenUnix({.path = path});
  EXPECT_TRUE(again) << again.error().message();
  ASSERT_TRUE(CreateFileWithContent(dir.File("f"), "x", 0600));
  auto not_socket = ListenUnix({.path = dir.File("f")});
  ASSERT_FALSE(not_socket);
  EXPECT_NE(not_socket.error().message().find("is not a socket"), std::string::npos);
}

TEST(UnixSocketTest, ADirectoryOthersMayWriteIsRefused) {
  testing::TempDir dir;
  for (mode_t mode : {01777, 0777, 0775}) {
    char name[16];
    static_cast<void>(std::snprintf(name, sizeof(name), "d%o", mode));
    std::string sub = dir.File(name);
    ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
    ASSERT_EQ(::chmod(sub.c_str(), mode), 0);
    auto r = ListenUnix({.path = sub + "/s"});
    ASSERT_FALSE(r) << std::oct << mode;
    EXPECT_NE(r.error().message().find("can be changed by other users"), std::string::npos)
        << r.error().message();
    EXPECT_NE(r.error().message().find("Refusing."), std::string::npos);
  }
  // Owned by another user, even with no write bit for others (only root can make one).
  if (::geteuid() == 0) {
    std::string theirs = dir.File("theirs");
    ASSERT_EQ(::mkdir(theirs.c_str(), 0755), 0);
    ASSERT_EQ(::chown(theirs.c_str(), 4242, 4242), 0);
    EXPECT_FALSE(ListenUnix({.path = theirs + "/s"}));
  }
  // /tmp above the directory is sticky and world-writable: that is fine.
  EXPECT_TRUE(ListenUnix({.path = dir.File("ok")}));
}

TEST(UnixSocketTest, BoundInAPrivateDirectoryThenRenamedWithModeAndGroup) {
  testing::TempDir dir;
  std::string path = dir.File("s");
  SocketFile bound;
  // Another group than our own needs root; without it, our own group shows the chown ran.
  gid_t group = ::geteuid() == 0 ? 4242 : ::getegid();
  auto listener = ListenUnix({.path = path, .mode = 0660, .group = group}, &bound);
  ASSERT_TRUE(listener) << listener.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, group);
  EXPECT_EQ(st.st_ino, bound.ino);
  // Nothing left of the private directory.
  auto entries = ListDirectory(dir.path());
  ASSERT_TRUE(entries);
  EXPECT_EQ(entries->size(), 1u);
  // Removed only while it is still the file bound.
  std::string other = dir.File("other");
  auto second = ListenUnix({.path = other});
  ASSERT_TRUE(second);
  ASSERT_EQ(::rename(other.c_str(), path.c_str()), 0);
  ASSERT_TRUE(RemoveSocketFile(bound));
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << "another socket now there was removed";
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_TRUE(RemoveSocketFile(bound));
}

TEST(UnixSocketTest, ALinkOnTheWayIsResolvedOnce) {
  testing::TempDir dir;
  std::string real = dir.File("real");
  ASSERT_EQ(::mkdir(real.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(real.c_str(), dir.File("link").c_str()), 0);
  SocketFile bound;
  auto listener = ListenUnix({.path = dir.File("link") + "/s"}, &bound);
  ASSERT_TRUE(listener) << listener.error().message();
  EXPECT_EQ(bound.path, real + "/s");
  struct stat st {};
  EXPECT_EQ(::lstat((real + "/s").c_str(), &st), 0);
}

TEST(UnixSocketTest, InheritedDescriptorChecks) {
  auto pair = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(pair);
  EXPECT_FALSE(CheckListeningUnixStream(pair->first.get()));
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe);
  EXPECT_FALSE(CheckListeningUnixStream(pipe->first.get()));
  UniqueFd unbound(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  Status st = CheckListeningUnixStream(unbound.get());
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("not listening"), std::string::npos);
}

TEST(UnixSocketTest, OverlongPathRefused) {
  auto r = ListenUnix({.path = std::string(200, 'a')});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("must be 1 to 107 bytes"), std::string::npos);
}

}  // namespace
}  // namespace cellhouse::ipc
