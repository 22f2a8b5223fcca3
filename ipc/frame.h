// Framing for the client protocol: each message is a varint length followed by that many bytes
// (protobuf's writeDelimitedTo/parseDelimitedFrom convention, so any language can speak it).
//
//   std::string wire = EncodeFrame(response);           // length prefix + payload
//
//   FrameDecoder decoder(kDefaultMaxFrameBytes);         // a peer we keep talking to
//   CH_RETURN_IF_ERROR(decoder.Feed(bytes_just_read));   // refuses an oversized prefix at once
//   for (;;) {
//     CH_ASSIGN_OR_RETURN(std::optional<std::string> frame, decoder.Next());
//     if (!frame) break;
//     Handle(*frame);
//   }
//
//   ExactFrameReader reader(kDefaultMaxFrameBytes);      // celld reading a client's first frame:
//   reader.ReadFrom(fd, budget);                         // never reads past the frame, so what
//                                                        // follows stays in the socket for the
//                                                        // worker the connection is handed to
//
// A length above the limit is refused as soon as the prefix is complete, before any allocation.
// Below the limit the payload buffer still grows only with the bytes that arrived (a length
// prefix is a claim, not a reason to allocate), and the reader asks its caller's budget before
// each growth.
#ifndef CELLHOUSE_IPC_FRAME_H_
#define CELLHOUSE_IPC_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <google/protobuf/message_lite.h>

#include "base/result.h"

namespace cellhouse::ipc {

inline constexpr size_t kDefaultMaxFrameBytes = 1 << 20;
// A varint for a 32-bit length is at most 5 bytes; longer prefixes are malformed.
inline constexpr size_t kMaxVarintBytes = 5;

// Serialises `message` with its length prefix.
std::string EncodeFrame(const google::protobuf::MessageLite& message);
// Appends the framed message to `out`.
void AppendFrame(const google::protobuf::MessageLite& message, std::string* out);

// Result of decoding a length prefix from the start of `bytes`.
struct VarintPrefix {
  enum class State { kIncomplete, kComplete, kMalformed };
  State state = State::kIncomplete;
  uint64_t value = 0;
  size_t prefix_bytes = 0;
};
VarintPrefix DecodeLengthPrefix(std::span<const std::byte> bytes);

// Incremental decoder for a stream the caller owns.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

  // Appends bytes read from the peer. Fails (and stays failed) on a malformed or oversized
  // length prefix; the error says which.
  Status Feed(std::span<const std::byte> bytes);
  Status Feed(std::string_view bytes);
  // The next complete frame's payload; nullopt when more bytes are needed; an error when the
  // next length prefix is malformed or over the limit (the stream is then failed).
  Result<std::optional<std::string>> Next();
  // Bytes buffered that do not yet form a complete frame.
  size_t buffered() const { return buffer_.size() - consumed_; }
  void Reset();

 private:
  Status CheckPrefix();

  size_t max_frame_bytes_;
  std::string buffer_;
  size_t consumed_ = 0;
  bool failed_ = false;
};

// Reads exactly one frame from a (possibly non-blocking) socket without consuming any byte that
// follows it: the prefix one byte per read(2), then exactly the payload.
class ExactFrameReader {
 public:
  enum class State {
    kIncomplete,  // would block; call again when readable
    kComplete,    // frame() holds the payload
    kEndOfFile,   // the peer closed before a complete frame
    kTooLarge,    // the prefix announced more than the limit
    kMalformed,   // the prefix is not a valid varint
    kOverBudget,  // the budget refused the memory the frame needs next
  };
  // Asked before the payload buffer grows by `bytes`: true grants them (the caller counts them
  // against its memory budget until it discards the reader), false refuses.
  using Budget = std::function<bool(size_t bytes)>;

  explicit ExactFrameReader(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

  // Reads what is available. System errors other than EAGAIN/EINTR are returned as errors.
  // Without a budget every growth is granted.
  Result<State> ReadFrom(int fd, const Budget& budget = nullptr);
  const std::string& frame() const { return payload_; }
  // The announced length once the prefix is complete (also when kTooLarge).
  uint64_t announced_length() const { return length_; }
  // Payload bytes read so far, and the buffer bytes granted by the budget (at most about twice
  // as many, plus a first small chunk).
  size_t received() const { return payload_.size(); }
  size_t held_bytes() const { return held_; }

 private:
  // Makes room for `more` payload bytes, asking the budget; false when it refused.
  bool Reserve(size_t more, const Budget& budget);

  size_t max_frame_bytes_;
  std::byte prefix_[kMaxVarintBytes] = {};
  size_t prefix_len_ = 0;
  bool have_length_ = false;
  uint64_t length_ = 0;
  std::string payload_;
  size_t held_ = 0;
};

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_FRAME_H_
