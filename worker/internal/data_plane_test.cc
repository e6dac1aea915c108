#include "worker/internal/data_plane.h"

#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

// A channel of 8 credits: the first grant is all of them; freed credits are held back while the
// producer holds more than 4 and go back together once it holds 4 or fewer.
TEST(CreditBatcherTest, HoldsFreedCreditsWhileTheProducerHoldsMoreThanHalf) {
  CreditBatcher c(8);
  EXPECT_EQ(c.Take(), 0);  // nothing freed yet
  c.Freed(8);
  EXPECT_EQ(c.Take(), 8);
  EXPECT_EQ(c.Take(), 0);

  // Two buffers arrive and are consumed: the producer still holds 6.
  c.Arrived();
  c.Arrived();
  c.Freed(1);
  c.Freed(1);
  EXPECT_EQ(c.Take(), 0);
  c.Arrived();  // holds 5
  c.Freed(1);
  EXPECT_EQ(c.Take(), 0);
  c.Arrived();  // holds 4: the three freed go back at once
  EXPECT_EQ(c.Take(), 3);
  EXPECT_EQ(c.Take(), 0);
  c.Freed(1);  // holds 7 again (4 + 3)
  EXPECT_EQ(c.Take(), 0);
}

// A slow consumer: the producer has spent every credit, so each freed one goes back at once.
TEST(CreditBatcherTest, ReturnsEveryCreditAtOnceToAProducerWithoutCredit) {
  CreditBatcher c(8);
  c.Freed(8);
  ASSERT_EQ(c.Take(), 8);
  for (int i = 0; i < 8; ++i) c.Arrived();
  for (int i = 0; i < 8; ++i) {
    c.Freed(1);
    EXPECT_EQ(c.Take(), 1) << i;
    c.Arrived();  // the producer spends it at once
  }
  // A freed credit is never held while the producer holds half or fewer.
  c.Freed(2);
  EXPECT_EQ(c.Take(), 2);
  c.Freed(2);
  EXPECT_EQ(c.Take(), 2);  // now holds 4
  c.Freed(1);
  EXPECT_EQ(c.Take(), 1);  // now holds 5
  c.Freed(1);
  EXPECT_EQ(c.Take(), 0);
}

}  // namespace
}  // namespace sluice::worker
