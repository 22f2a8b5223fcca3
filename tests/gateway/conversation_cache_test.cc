// Conversation reuse: the longest held prefix wins, nothing crosses tenants, the cache is
// bounded and expires.
#include "gateway/conversation_cache.h"

#include <memory>
#include <vector>

#include <gtest/gtest.h>

namespace cellhouse::gateway {
namespace {

// A session that only says whether it is idle and counts its closing.
class StubSession : public BackendSession {
 public:
  StubSession(int id, int* closed) : id_(id), closed_(closed) {}
  ~StubSession() override { ++*closed_; }
  void Open(OpenCallback) override {}
  void StartTurn(const TurnRequest&, TurnObserver*) override {}
  void Cancel() override {}
  void SetPaused(bool) override {}
  bool idle() const override { return idle_; }
  int id() const { return id_; }
  bool idle_ = true;

 private:
  int id_;
  int* closed_;
};

std::vector<ChatMessage> Conversation(int turns) {
  std::vector<ChatMessage> m = {{.role = "system", .content = "be kind"}};
  for (int i = 0; i < turns; ++i) {
    m.push_back({.role = "user", .content = "question " + std::to_string(i)});
    m.push_back({.role = "assistant", .content = "answer " + std::to_string(i)});
  }
  return m;
}

class ConversationCacheTest : public ::testing::Test {
 protected:
  // Puts a session holding `held` for `tenant`.
  void Hold(const std::string& tenant, const std::vector<ChatMessage>& held, int id,
            size_t limit = 4, int64_t now = 0) {
    std::vector<ConversationCache::Digest> d = ConversationCache::PrefixDigests(held);
    cache_.Put(Tenant{tenant}, "m", std::make_unique<StubSession>(id, &closed_), d.back(),
               held.size(), limit, now);
  }
  int Take(const std::string& tenant, const std::vector<ChatMessage>& request,
           size_t* held = nullptr) {
    auto hit = cache_.Take(Tenant{tenant}, "m", ConversationCache::PrefixDigests(request));
    if (!hit) return 0;
    if (held != nullptr) *held = hit->messages_held;
    return static_cast<StubSession*>(hit->session.get())->id();
  }

  int closed_ = 0;
  ConversationCache cache_;
};

TEST_F(ConversationCacheTest, ARequestExtendingAHeldConversationGetsItsSession) {
  Hold("alice", Conversation(1), 1);
  std::vector<ChatMessage> next = Conversation(1);
  next.push_back({.role = "user", .content = "and then?"});
  size_t held = 0;
  EXPECT_EQ(Take("alice", next, &held), 1);
  EXPECT_EQ(held, 3u);
  EXPECT_EQ(cache_.size(), 0u);  // taken, not shared
  EXPECT_EQ(Take("alice", next), 0);
}

TEST_F(ConversationCacheTest, TheLongestHeldPrefixWins) {
  Hold("alice", Conversation(1), 1);
  Hold("alice", Conversation(2), 2);
  std::vector<ChatMessage> next = Conversation(2);
  next.push_back({.role = "user", .content = "more"});
  EXPECT_EQ(Take("alice", next), 2);
  EXPECT_EQ(Take("alice", next), 1);
}

TEST_F(ConversationCacheTest, NothingCrossesTenantsOrModels) {
  Hold("alice", Conversation(1), 1);
  std::vector<ChatMessage> next = Conversation(1);
  next.push_back({.role = "user", .content = "x"});
  EXPECT_EQ(Take("bob", next), 0);
  EXPECT_FALSE(cache_.Take(Tenant{"alice"}, "other-model", ConversationCache::PrefixDigests(next)));
  EXPECT_EQ(cache_.size(Tenant{"alice"}), 1u);
  EXPECT_EQ(cache_.size(Tenant{"bob"}), 0u);
}

TEST_F(ConversationCacheTest, AnyDifferenceInAHeldMessageMisses) {
  Hold("alice", Conversation(1), 1);
  std::vector<ChatMessage> next = Conversation(1);
  next[2].content += " ";  // the client edited the assistant's answer
  next.push_back({.role = "user", .content = "x"});
  EXPECT_EQ(Take("alice", next), 0);
  next = Conversation(1);  // the same conversation with nothing new: not a continuation
  EXPECT_EQ(Take("alice", next), 0);
}

TEST_F(ConversationCacheTest, BoundedPerTenantLeastRecentlyUsedGoes) {
  Hold("alice", Conversation(1), 1, 2, 10);
  Hold("alice", Conversation(2), 2, 2, 20);
  Hold("alice", Conversation(3), 3, 2, 30);
  EXPECT_EQ(cache_.size(Tenant{"alice"}), 2u);
  EXPECT_EQ(closed_, 1);
  std::vector<ChatMessage> next = Conversation(1);
  next.push_back({.role = "user", .content = "x"});
  EXPECT_EQ(Take("alice", next), 0);   // session 1 was the oldest
  Hold("bob", Conversation(1), 4, 0);  // a limit of 0 keeps nothing
  EXPECT_EQ(cache_.size(Tenant{"bob"}), 0u);
  EXPECT_EQ(closed_, 2);
}

TEST_F(ConversationCacheTest, ExpiresAndDropsDeadSessions) {
  Hold("alice", Conversation(1), 1, 4, 0);
  Hold("alice", Conversation(2), 2, 4, 100);
  EXPECT_EQ(cache_.Expire(150, 100), 1u);
  EXPECT_EQ(cache_.size(), 1u);
  EXPECT_EQ(cache_.Expire(1000, 100), 1u);
  EXPECT_EQ(cache_.size(), 0u);
  EXPECT_EQ(closed_, 2);
}

TEST_F(ConversationCacheTest, DigestsSeparateFieldBoundaries) {
  auto a = ConversationCache::PrefixDigests({{.role = "user", .content = "ab"}});
  auto b = ConversationCache::PrefixDigests({{.role = "usera", .content = "b"}});
  EXPECT_NE(a.back(), b.back());
  EXPECT_EQ(a.front(), b.front());
}

}  // namespace
}  // namespace cellhouse::gateway
