// Fuzzes the executor's intake of a worker's slot: arbitrary header words and sequence numbers,
// message after message, against the executor's record of that worker. Whatever the bytes,
// TakeMessage must not crash, and a message it accepts must lie within the executor's own bounds
// (the offsets and lengths the batch loop derives from it stay inside the slot).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "executor/slot_message.h"

namespace {

using cellhouse::executor::SlotCommand;
using cellhouse::executor::SlotHeader;
using cellhouse::executor::SlotShape;

uint32_t Take32(const uint8_t*& data, size_t& size) {
  uint32_t v = 0;
  const size_t n = size < 4 ? size : 4;
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cellhouse::executor;  // NOLINT(google-build-using-namespace): a fuzz target
  const SlotShape shapes[] = {
      {.max_rows = 1,
       .rounds = 2,
       .input_row_floats = 1,
       .output_row_floats = 1,
       .final_floats = 1},
      {.max_rows = 16,
       .rounds = 13,
       .input_row_floats = 1536,
       .output_row_floats = 3072,
       .final_floats = 32000},
  };
  const SlotShape& shape = shapes[size > 0 ? data[0] % 2 : 0];
  auto header = std::make_unique<SlotHeader>();
  SlotProgress progress;
  while (size > 0) {
    const uint32_t seq_delta = Take32(data, size) % 4;  // mostly in order, sometimes not
    header->command.store(Take32(data, size) % 7);      // the known commands, 0 and two unknown
    header->round.store(Take32(data, size) % (shape.rounds + 2));
    header->rows.store(Take32(data, size) % (shape.max_rows + 3));
    header->kind.store(Take32(data, size) % 4);
    header->step_flags.store(Take32(data, size) % 3);
    const uint32_t request = progress.answered + seq_delta;
    auto m = TakeMessage(*header, request, progress, shape);
    if (!m) continue;
    if (m->command == SlotCommand::kRound) {
      if (m->round >= shape.rounds || m->rows < 1 || m->rows > shape.max_rows) std::abort();
    }
    if (m->seq != progress.answered + 1) std::abort();
    Advance(&progress, *m, shape);
    const auto next = ExpectedRound(progress);
    if (next && *next >= shape.rounds) std::abort();
  }
  return 0;
}
