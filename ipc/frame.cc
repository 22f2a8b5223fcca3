#include "ipc/frame.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace cellhouse::ipc {

void AppendFrame(const google::protobuf::MessageLite& message, std::string* out) {
  size_t size = message.ByteSizeLong();
  uint64_t v = size;
  do {
    auto byte = static_cast<char>(v & 0x7f);
    v >>= 7;
    if (v != 0) byte = static_cast<char>(byte | 0x80);
    out->push_back(byte);
  } while (v != 0);
  size_t start = out->size();
  out->resize(start + size);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out->data() + start));
}

std::string EncodeFrame(const google::protobuf::MessageLite& message) {
  std::string out;
  AppendFrame(message, &out);
  return out;
}

VarintPrefix DecodeLengthPrefix(std::span<const std::byte> bytes) {
  VarintPrefix result;
  uint64_t value = 0;
  for (size_t i = 0; i < bytes.size() && i < kMaxVarintBytes; ++i) {
    auto b = static_cast<uint8_t>(bytes[i]);
    value |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      result.state = VarintPrefix::State::kComplete;
      result.value = value;
      result.prefix_bytes = i + 1;
      return result;
    }
  }
  if (bytes.size() >= kMaxVarintBytes) result.state = VarintPrefix::State::kMalformed;
  return result;
}

namespace {
std::string TooLarge(uint64_t length, size_t limit) {
  return "frame of " + std::to_string(length) + " bytes is larger than the limit of " +
         std::to_string(limit) + " bytes";
}
}  // namespace

Status FrameDecoder::Feed(std::span<const std::byte> bytes) {
  if (failed_) return Error("frame decoder: the stream already failed");
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return CheckPrefix();
}

Status FrameDecoder::Feed(std::string_view bytes) {
  return Feed(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

Status FrameDecoder::CheckPrefix() {
  auto pending =
      std::as_bytes(std::span<const char>(buffer_.data() + consumed_, buffer_.size() - consumed_));
  VarintPrefix prefix = DecodeLengthPrefix(pending);
  if (prefix.state == VarintPrefix::State::kMalformed) {
    failed_ = true;
    return Error("malformed frame length prefix");
  }
  if (prefix.state == VarintPrefix::State::kComplete && prefix.value > max_frame_bytes_) {
    failed_ = true;
    return Error(TooLarge(prefix.value, max_frame_bytes_));
  }
  return Ok();
}

Result<std::optional<std::string>> FrameDecoder::Next() {
  if (failed_) return Error("frame decoder: the stream already failed");
  CH_RETURN_IF_ERROR(CheckPrefix());
  auto pending =
      std::as_bytes(std::span<const char>(buffer_.data() + consumed_, buffer_.size() - consumed_));
  VarintPrefix prefix = DecodeLengthPrefix(pending);
  if (prefix.state != VarintPrefix::State::kComplete) return std::optional<std::string>();
  if (pending.size() - prefix.prefix_bytes < prefix.value) return std::optional<std::string>();
  std::string frame(buffer_.data() + consumed_ + prefix.prefix_bytes, prefix.value);
  consumed_ += prefix.prefix_bytes + prefix.value;
  // Compact once the consumed part dominates, so a long-lived stream does not grow.
  if (consumed_ > 4096 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return std::optional<std::string>(std::move(frame));
}

void FrameDecoder::Reset() {
  buffer_.clear();
  consumed_ = 0;
  failed_ = false;
}

namespace {
// The first payload buffer; it then doubles as bytes arrive.
constexpr size_t kFirstPayloadChunk = 256;
// Read at most this much per read(2): the buffer is grown for what arrived, not for the claim.
constexpr size_t kReadChunk = 4096;
}  // namespace

bool ExactFrameReader::Reserve(size_t more, const Budget& budget) {
  size_t need = payload_.size() + more;
  if (need <= held_) return true;
  size_t target = std::max({need, held_ * 2, kFirstPayloadChunk});
  target = std::min<size_t>(target, length_);
  if (budget && !budget(target - held_)) {
    // Room to double is not there; exactly what arrived may still be.
    if (target == need || !budget(need - held_)) return false;
    target = need;
  }
  payload_.reserve(target);
  held_ = target;
  return true;
}

Result<ExactFrameReader::State> ExactFrameReader::ReadFrom(int fd, const Budget& budget) {
  while (!have_length_) {
    ssize_t n = ::read(fd, &prefix_[prefix_len_], 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return State::kIncomplete;
      return Error::FromErrno(errno, "read from client");
    }
    if (n == 0) return State::kEndOfFile;
    ++prefix_len_;
    VarintPrefix prefix = DecodeLengthPrefix(std::span<const std::byte>(prefix_, prefix_len_));
    if (prefix.state == VarintPrefix::State::kMalformed) return State::kMalformed;
    if (prefix.state == VarintPrefix::State::kComplete) {
      length_ = prefix.value;
      if (length_ > max_frame_bytes_) return State::kTooLarge;
      have_length_ = true;
    }
  }
  while (payload_.size() < length_) {
    // Never past the frame: what follows belongs to whoever reads the socket next.
    char chunk[kReadChunk];
    size_t want = std::min<size_t>(sizeof(chunk), length_ - payload_.size());
    ssize_t n = ::read(fd, chunk, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return State::kIncomplete;
      return Error::FromErrno(errno, "read from client");
    }
    if (n == 0) return State::kEndOfFile;
    if (!Reserve(static_cast<size_t>(n), budget)) return State::kOverBudget;
    payload_.append(chunk, static_cast<size_t>(n));
  }
  return State::kComplete;
}

}  // namespace cellhouse::ipc
