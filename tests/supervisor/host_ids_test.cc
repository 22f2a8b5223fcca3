#include "supervisor/host_ids.h"

#include <gtest/gtest.h>

namespace cellhouse::supervisor {
namespace {

TEST(HostIdsTest, BlocksNeverOverlapAcrossRangesAndAreReused) {
  HostIdAllocator ids;
  EXPECT_EQ(*ids.Allocate(1000, 6, 2), 1000u);
  EXPECT_EQ(*ids.Allocate(1000, 6, 2), 1002u);
  // Another policy's range overlapping the first: its blocks avoid the live ones.
  EXPECT_EQ(*ids.Allocate(1001, 10, 2), 1004u);
  EXPECT_EQ(ids.Allocate(1000, 6, 2).error().message(),
            "no free host ids left in the policy's range 1000+6 (3 sessions at most)");
  ids.Release(1002);
  EXPECT_EQ(*ids.Allocate(1000, 6, 2), 1002u);
  EXPECT_EQ(ids.live(), 3u);
}

TEST(HostIdsTest, RangeAtTheTopOfTheIdSpaceDoesNotWrap) {
  HostIdAllocator ids;
  EXPECT_EQ(*ids.Allocate(4294967290u, 4, 2), 4294967290u);
  EXPECT_EQ(*ids.Allocate(4294967290u, 4, 2), 4294967292u);
  EXPECT_FALSE(ids.Allocate(4294967290u, 4, 2));
}

}  // namespace
}  // namespace cellhouse::supervisor
