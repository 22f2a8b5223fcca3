// The executor's check of what a worker wrote in its slot: every hostile header is refused with a
// reason, every accepted message is within the executor's own bounds, and the sequence of rounds
// a step may take is exactly the one the layout promises.
#include "executor/slot_message.h"

#include <memory>

#include <gtest/gtest.h>

#include "executor/slot_layout.h"

namespace cellhouse::executor {
namespace {

SlotShape Shape() {
  return {
      .max_rows = 4, .rounds = 3, .input_row_floats = 8, .output_row_floats = 8, .final_floats = 5};
}

struct Message {
  uint32_t command = static_cast<uint32_t>(SlotCommand::kRound);
  uint32_t round = 0;
  uint32_t rows = 1;
  uint32_t kind = static_cast<uint32_t>(RowKind::kDecode);
  uint32_t flags = 0;
};

class SlotMessageTest : public ::testing::Test {
 protected:
  // Writes `m` as the worker would and takes it as the executor does.
  Result<SlotMessage> Send(const Message& m, uint32_t seq) {
    h_->command.store(m.command);
    h_->round.store(m.round);
    h_->rows.store(m.rows);
    h_->kind.store(m.kind);
    h_->step_flags.store(m.flags);
    h_->request.store(seq);
    return TakeMessage(*h_, seq, progress_, shape_);
  }
  // Sends and, when accepted, answers it.
  bool SendAndAdvance(const Message& m) {
    Result<SlotMessage> taken = Send(m, progress_.answered + 1);
    if (!taken) return false;
    Advance(&progress_, *taken, shape_);
    return true;
  }

  std::unique_ptr<SlotHeader> h_ = std::make_unique<SlotHeader>();
  SlotProgress progress_;
  SlotShape shape_ = Shape();
};

TEST_F(SlotMessageTest, ADecodeStepRunsItsRoundsInOrder) {
  EXPECT_EQ(ExpectedRound(progress_), std::nullopt);  // a new slot is idle
  for (uint32_t round = 0; round < 3; ++round) {
    EXPECT_TRUE(SendAndAdvance({.round = round})) << round;
  }
  EXPECT_EQ(progress_.phase, SlotProgress::Phase::kBetweenSteps);
  EXPECT_EQ(ExpectedRound(progress_), 0u);
  EXPECT_TRUE(SendAndAdvance({.round = 0}));
  EXPECT_EQ(ExpectedRound(progress_), 1u);
}

TEST_F(SlotMessageTest, APrefillChunkMayEndBeforeTheFinalRound) {
  Message chunk{
      .rows = 4, .kind = static_cast<uint32_t>(RowKind::kPrefill), .flags = kStepSkipsFinal};
  chunk.round = 0;
  EXPECT_TRUE(SendAndAdvance(chunk));
  chunk.round = 1;
  EXPECT_TRUE(SendAndAdvance(chunk));
  EXPECT_EQ(progress_.phase, SlotProgress::Phase::kBetweenSteps);
  // The final round of that step is no longer on offer.
  chunk.round = 2;
  EXPECT_FALSE(Send(chunk, progress_.answered + 1));
}

TEST_F(SlotMessageTest, HostileHeadersAreRefusedWithAReason) {
  struct Case {
    const char* what;
    Message m;
    uint32_t seq_offset;
  };
  const Case cases[] = {
      {"sequence jumps", {}, 2},
      {"sequence repeats", {}, 0},
      {"unknown command", {.command = 0}, 1},
      {"huge command", {.command = 0xffffffff}, 1},
      {"round not 0 outside a step", {.round = 1}, 1},
      {"round past the last", {.round = 3}, 1},
      {"no rows", {.rows = 0}, 1},
      {"more rows than the slot holds", {.rows = 5, .kind = 2}, 1},
      {"rows beyond any slot", {.rows = 0xffffffff, .kind = 2}, 1},
      {"unknown kind", {.kind = 7}, 1},
      {"decode of several rows", {.rows = 2}, 1},
      {"unknown flags", {.flags = 0x80}, 1},
  };
  for (const Case& c : cases) {
    Result<SlotMessage> m = Send(c.m, progress_.answered + c.seq_offset);
    ASSERT_FALSE(m) << c.what;
    EXPECT_FALSE(m.error().message().empty()) << c.what;
  }
}

TEST_F(SlotMessageTest, AStepKeepsTheRowsKindAndFlagsOfItsRoundZero) {
  ASSERT_TRUE(SendAndAdvance({.round = 0, .rows = 3, .kind = 2}));
  EXPECT_FALSE(Send({.round = 1, .rows = 4, .kind = 2}, progress_.answered + 1));
  EXPECT_FALSE(Send({.round = 1, .rows = 3, .kind = 1}, progress_.answered + 1));
  EXPECT_FALSE(
      Send({.round = 1, .rows = 3, .kind = 2, .flags = kStepSkipsFinal}, progress_.answered + 1));
  EXPECT_FALSE(Send({.round = 2, .rows = 3, .kind = 2}, progress_.answered + 1));  // skips one
  EXPECT_TRUE(Send({.round = 1, .rows = 3, .kind = 2}, progress_.answered + 1));
}

TEST_F(SlotMessageTest, IdleAndLeaveAreAcceptedAnywhere) {
  ASSERT_TRUE(SendAndAdvance({.round = 0}));
  Result<SlotMessage> idle = Send(
      {.command = static_cast<uint32_t>(SlotCommand::kIdle), .round = 99, .rows = 0, .kind = 0},
      progress_.answered + 1);
  ASSERT_TRUE(idle);
  Advance(&progress_, *idle, shape_);
  EXPECT_EQ(ExpectedRound(progress_), std::nullopt);
  EXPECT_TRUE(
      Send({.command = static_cast<uint32_t>(SlotCommand::kLeave)}, progress_.answered + 1));
}

TEST_F(SlotMessageTest, ASoloSessionIsBusyButNotExpectedAndComesBackWithRoundZero) {
  ASSERT_TRUE(SendAndAdvance({.round = 0}));
  ASSERT_TRUE(SendAndAdvance({.round = 1}));
  ASSERT_TRUE(SendAndAdvance({.round = 2}));
  ASSERT_TRUE(SendAndAdvance({.command = static_cast<uint32_t>(SlotCommand::kSolo)}));
  EXPECT_EQ(progress_.phase, SlotProgress::Phase::kSolo);
  EXPECT_EQ(ExpectedRound(progress_), std::nullopt);  // its steps are its own: not waited for
  // Back in a step, it starts at round 0 and nowhere else.
  EXPECT_FALSE(Send({.round = 1}, progress_.answered + 1));
  ASSERT_TRUE(SendAndAdvance({.round = 0}));
  EXPECT_EQ(progress_.phase, SlotProgress::Phase::kInStep);
  // Sent mid-step, it leaves the step, as Idle does: the next round is 0 again.
  ASSERT_TRUE(SendAndAdvance({.command = static_cast<uint32_t>(SlotCommand::kSolo)}));
  EXPECT_EQ(ExpectedRound(progress_), std::nullopt);
  EXPECT_FALSE(Send({.round = 1}, progress_.answered + 1));
  ASSERT_TRUE(SendAndAdvance({.round = 0}));
  // The turn ends after solo steps as after any other.
  ASSERT_TRUE(SendAndAdvance({.command = static_cast<uint32_t>(SlotCommand::kSolo)}));
  ASSERT_TRUE(SendAndAdvance({.command = static_cast<uint32_t>(SlotCommand::kIdle)}));
  EXPECT_EQ(progress_.phase, SlotProgress::Phase::kIdle);
  EXPECT_FALSE(Send({.command = 5}, progress_.answered + 1));  // beyond the known commands
}

TEST_F(SlotMessageTest, WhatWasTakenIsACopy) {
  Result<SlotMessage> m = Send({.round = 0, .rows = 4, .kind = 2}, 1);
  ASSERT_TRUE(m);
  // The worker rewrites its header after the check: the executor's copy does not move.
  h_->rows.store(0xffffffff);
  h_->round.store(77);
  EXPECT_EQ(m->rows, 4u);
  EXPECT_EQ(m->round, 0u);
}

TEST(SlotLayoutTest, SizesFollowTheShape) {
  SlotShape s = Shape();
  ASSERT_TRUE(ValidateShape(s));
  EXPECT_EQ(RowStrideFloats(s), 8u);
  EXPECT_EQ(PayloadFloats(s), 32u);
  EXPECT_EQ(SlotBytes(s), kSlotHeaderBytes + kSlotPageBytes);
  // The 110m model's shape: 16 rows of [x | attention] in, [x | q | k | v] out, 32000 logits.
  SlotShape big{.max_rows = 16,
                .rounds = 13,
                .input_row_floats = 1536,
                .output_row_floats = 3072,
                .final_floats = 32000};
  ASSERT_TRUE(ValidateShape(big));
  EXPECT_EQ(SlotBytes(big), kSlotHeaderBytes + size_t{16} * 3072 * 4);
  for (SlotShape bad : {SlotShape{},
                        SlotShape{.max_rows = 1,
                        .rounds = 1,
                        .input_row_floats = 1,
                        .output_row_floats = 1,
                        .final_floats = 1},
                        SlotShape{.max_rows = kMaxSlotRows,
                        .rounds = 2,
                        .input_row_floats = kMaxSlotRowFloats,
                        .output_row_floats = 1,
                        .final_floats = 1}}) {
    EXPECT_FALSE(ValidateShape(bad));
  }
}

}  // namespace
}  // namespace cellhouse::executor
