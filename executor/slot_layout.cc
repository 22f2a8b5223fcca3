#include "executor/slot_layout.h"

#include "base/str_cat.h"

namespace cellhouse::executor {

Status ValidateShape(const SlotShape& s) {
  auto in_range = [](uint32_t v, uint32_t lo, uint32_t hi) { return v >= lo && v <= hi; };
  if (!in_range(s.max_rows, 1, kMaxSlotRows) || !in_range(s.rounds, 2, kMaxSlotRounds) ||
      !in_range(s.input_row_floats, 1, kMaxSlotRowFloats) ||
      !in_range(s.output_row_floats, 1, kMaxSlotRowFloats) ||
      !in_range(s.final_floats, 1, kMaxSlotFinalFloats)) {
    return Error(StrCat("slot shape out of bounds: max_rows ", s.max_rows, ", rounds ", s.rounds,
                        ", row floats ", s.input_row_floats, "/", s.output_row_floats,
                        ", final floats ", s.final_floats));
  }
  if (SlotBytes(s) > kMaxSlotBytes) {
    return Error(StrCat("slot shape needs ", SlotBytes(s), " bytes, more than ", kMaxSlotBytes));
  }
  return Ok();
}

uint64_t PayloadFloats(const SlotShape& s) {
  // Below the bounds: 2^10 rows x 2^20 floats = 2^30, no overflow.
  uint64_t rows = uint64_t{s.max_rows} * RowStrideFloats(s);
  return rows > s.final_floats ? rows : s.final_floats;
}

uint64_t SlotBytes(const SlotShape& s) {
  uint64_t payload = PayloadFloats(s) * sizeof(float);
  payload = (payload + kSlotPageBytes - 1) / kSlotPageBytes * kSlotPageBytes;
  return kSlotHeaderBytes + payload;
}

void InitHeader(SlotHeader* h, const SlotShape& s) {
  h->magic.store(kSlotMagic, std::memory_order_relaxed);
  h->version.store(kSlotVersion, std::memory_order_relaxed);
  const uint32_t fields[5] = {s.max_rows, s.rounds, s.input_row_floats, s.output_row_floats,
                              s.final_floats};
  for (int i = 0; i < 5; ++i) h->shape[i].store(fields[i], std::memory_order_relaxed);
}

SlotShape ShapeInHeader(const SlotHeader& h) {
  return SlotShape{.max_rows = h.shape[0].load(std::memory_order_relaxed),
                   .rounds = h.shape[1].load(std::memory_order_relaxed),
                   .input_row_floats = h.shape[2].load(std::memory_order_relaxed),
                   .output_row_floats = h.shape[3].load(std::memory_order_relaxed),
                   .final_floats = h.shape[4].load(std::memory_order_relaxed)};
}

}  // namespace cellhouse::executor
