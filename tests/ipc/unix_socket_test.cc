#include "ipc/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
