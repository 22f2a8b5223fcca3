// Fuzzes what celld and workers do with bytes from a client: frame decoding and Request parsing.
#include <cstddef>
#include <cstdint>

#include "ipc/api.pb.h"
#include "ipc/frame.h"
#include "ipc/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using cellhouse::ipc::FrameDecoder;
  FrameDecoder decoder(4096);
  // Feed in two uneven pieces to exercise partial prefixes.
  size_t split = size > 0 ? data[0] % (size + 1) : 0;
  auto bytes = std::as_bytes(std::span<const uint8_t>(data, size));
  for (auto piece : {bytes.first(split), bytes.subspan(split)}) {
    if (!decoder.Feed(piece)) return 0;
    for (;;) {
      auto frame = decoder.Next();
      if (!frame || !frame->has_value()) break;
      cellhouse::api::Request request;
      if (request.ParseFromString(**frame)) {
        (void)cellhouse::ipc::RequestKindName(request);
        std::string again = cellhouse::ipc::EncodeFrame(request);
        (void)again;
      }
    }
  }
  return 0;
}
