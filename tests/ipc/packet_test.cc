#include "ipc/packet.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "base/io.h"
#include "ipc/control.pb.h"

namespace cellhouse::ipc {
namespace {

TEST(PacketTest, MessageWithDescriptorsArrivesCloseOnExec) {
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe);
  control::SupervisorMessage m;
  m.mutable_attach_client()->set_reattach(true);
  ASSERT_TRUE(SendMessage(channel->first.get(), m, {{pipe->second.get()}}));
  auto got = ReceiveMessage<control::SupervisorMessage>(channel->second.get(), {.max_fds = 1});
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_TRUE(got->message.attach_client().reattach());
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_TRUE(fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC);
  // The received descriptor is the same pipe.
  ASSERT_TRUE(WriteFull(got->fds[0].get(), std::string_view("z"), "pipe"));
  char c = 0;
  ASSERT_EQ(read(pipe->first.get(), &c, 1), 1);
  EXPECT_EQ(c, 'z');
}

TEST(PacketTest, UnexpectedDescriptorsAreRefusedAndClosed) {
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe);
  control::SupervisorMessage m;
  m.mutable_ping()->set_nonce(1);
  ASSERT_TRUE(SendMessage(channel->first.get(), m, {{pipe->first.get()}}));
  pipe->first.reset();
  auto got = ReceiveMessage<control::SupervisorMessage>(channel->second.get(), {.max_fds = 0});
  ASSERT_FALSE(got);
  // The read end we passed was closed by the receiver: writing now fails with EPIPE.
  static_cast<void>(signal(SIGPIPE, SIG_IGN));
  EXPECT_EQ(write(pipe->second.get(), "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
}

TEST(PacketTest, OversizedPacketIsAnErrorNotTruncated) {
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  std::string big(1000, 'x');
  ASSERT_TRUE(SendPacket(channel->first.get(), std::as_bytes(std::span(big)), {}));
  auto got = ReceivePacket(channel->second.get(), {.max_bytes = 999});
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message().find("larger than 999"), std::string::npos);
}

TEST(PacketTest, EndOfStreamAndWouldBlock) {
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  auto none = ReceivePacket(channel->second.get(), {.nonblocking = true});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->would_block);
  channel->first.reset();
  auto eof = ReceivePacket(channel->second.get(), {});
  ASSERT_TRUE(eof);
  EXPECT_TRUE(eof->end_of_stream);
}

TEST(PacketTest, GarbageIsAParseError) {
  auto channel = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_TRUE(channel);
  std::string junk = "\xff\xff\xff\xff";
  ASSERT_TRUE(SendPacket(channel->first.get(), std::as_bytes(std::span(junk)), {}));
  auto got = ReceiveMessage<control::WorkerMessage>(channel->second.get(), {});
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message().find("malformed cellhouse.control.WorkerMessage"),
            std::string::npos);
}

}  // namespace
}  // namespace cellhouse::ipc
