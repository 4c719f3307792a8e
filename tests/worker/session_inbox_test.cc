#include "worker/rpc/session_inbox.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace metatrain::worker {
namespace {

v1::CoordinatorMessage AssignmentMessage(int64_t id) {
  v1::CoordinatorMessage message;
  message.mutable_assignment()->set_assignment_id(id);
  message.mutable_assignment()->set_job_id("job-000001");
  return message;
}

v1::CoordinatorMessage CancelMessage(int64_t id) {
  v1::CoordinatorMessage message;
  message.mutable_cancel()->set_assignment_id(id);
  return message;
}

v1::CoordinatorMessage ParametersOfBytes(int64_t bytes) {
  v1::CoordinatorMessage message;
  message.mutable_parameters()->set_job_id("job-000001");
  message.mutable_parameters()->mutable_chunk()->set_data(std::string(bytes, 'x'));
  return message;
}

TEST(SessionInboxTest, CancelMarksOnlyTheQueuedAssignmentAndIsNotQueued) {
  SessionInbox inbox(1 << 20);
  ASSERT_TRUE(inbox.Push(AssignmentMessage(7)));
  ASSERT_TRUE(inbox.Push(AssignmentMessage(8)));
  ASSERT_TRUE(inbox.Push(CancelMessage(8)));
  ASSERT_TRUE(inbox.Push(CancelMessage(99)));  // not here (computed already): no effect
  auto first = inbox.Pop();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->message.assignment().assignment_id(), 7);
  EXPECT_FALSE(first->cancelled);
  EXPECT_FALSE(inbox.CancelRequested(7));
  // A cancel for the assignment being computed is noted for its compute thread.
  ASSERT_TRUE(inbox.Push(CancelMessage(7)));
  EXPECT_TRUE(inbox.CancelRequested(7));
  EXPECT_FALSE(inbox.CancelRequested(8));
  auto second = inbox.Pop();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->message.assignment().assignment_id(), 8);
  EXPECT_TRUE(second->cancelled);
  EXPECT_FALSE(inbox.CancelRequested(7));  // no longer the one being computed
  EXPECT_EQ(inbox.queued_bytes(), 0);
}

TEST(SessionInboxTest, AfterCloseOnlyNonAssignmentsAreHandedOut) {
  SessionInbox inbox(1 << 20);
  ASSERT_TRUE(inbox.Push(AssignmentMessage(1)));
  v1::CoordinatorMessage shutdown;
  shutdown.mutable_shutdown()->set_reason("bye");
  ASSERT_TRUE(inbox.Push(shutdown));
  inbox.Close();
  EXPECT_FALSE(inbox.Push(AssignmentMessage(2)));
  auto item = inbox.Pop();
  ASSERT_TRUE(item.has_value());
  EXPECT_TRUE(item->message.has_shutdown());
  EXPECT_FALSE(inbox.Pop().has_value());
}

// The reader blocks while the queue is over its bound, resumes as the consumer takes
// messages, and the queue never holds more than the bound plus one message.
TEST(SessionInboxTest, ProducerWaitsWhileTheQueueIsFull) {
  constexpr int64_t kBound = 4000;
  constexpr int kMessages = 50;
  SessionInbox inbox(kBound);
  std::thread producer([&] {
    for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(inbox.Push(ParametersOfBytes(1000)));
  });
  int64_t most = 0;
  for (int i = 0; i < kMessages; ++i) {
    most = std::max(most, inbox.queued_bytes());
    auto item = inbox.Pop();
    ASSERT_TRUE(item.has_value());
    EXPECT_EQ(item->message.parameters().chunk().data().size(), 1000u);
  }
  producer.join();
  EXPECT_LE(most, kBound + 1100);
  EXPECT_EQ(inbox.queued_bytes(), 0);
}

TEST(SessionInboxTest, CloseWakesAProducerWaitingForRoom) {
  SessionInbox inbox(1000);
  ASSERT_TRUE(inbox.Push(ParametersOfBytes(2000)));  // an empty queue takes anything
  bool pushed = true;
  std::thread producer([&] { pushed = inbox.Push(ParametersOfBytes(10)); });
  inbox.Close();
  producer.join();
  EXPECT_FALSE(pushed);
}

}  // namespace
}  // namespace metatrain::worker
