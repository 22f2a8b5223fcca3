// Conversation reuse. The API is stateless: every chat request carries the whole conversation.
// A session that just answered holds that conversation (its KV cache), so the gateway keeps it
// idle for a while, with a digest of the messages it holds; a later request whose messages
// extend exactly those (the same messages, then the reply the session gave, then new ones) is
// routed to it, and the session evaluates only what is new.
//
// Per tenant and model, bounded (TenantLimits::max_idle_sessions, least recently used goes
// first), expiring after an idle time. Nothing crosses tenants: the tenant is part of the key,
// a lookup only ever sees the requesting tenant's sessions, and a digest match needs every
// message byte for byte (SHA-256 over the whole prefix, lengths included).
//
//   std::vector<ConversationCache::Digest> prefix = ConversationCache::PrefixDigests(messages);
//   if (auto hit = cache.Take(tenant, model, prefix)) { reuse hit->session, hit->messages_held }
//   ... after the turn: cache.Put(tenant, model, std::move(session), prefix_of(held), limit, now);
#ifndef CELLHOUSE_GATEWAY_CONVERSATION_CACHE_H_
#define CELLHOUSE_GATEWAY_CONVERSATION_CACHE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/backend.h"

namespace cellhouse::gateway {

class ConversationCache {
 public:
  using Digest = std::array<uint8_t, 32>;

  // result[k] is the digest of messages[0..k) (result[0]: the empty conversation).
  static std::vector<Digest> PrefixDigests(const std::vector<ChatMessage>& messages);
  // The digest of `messages` extended by one more.
  static Digest Extend(const Digest& prefix, const ChatMessage& message);

  struct Hit {
    std::unique_ptr<BackendSession> session;
    size_t messages_held = 0;
  };
  // Removes and returns the idle session of this tenant and model whose messages are the
  // longest proper prefix of the request's (`prefix` from PrefixDigests), if any.
  std::optional<Hit> Take(const Tenant& tenant, const std::string& model,
                          const std::vector<Digest>& prefix);
  // Keeps `session`, idle, holding `held_count` messages with digest `held`. Beyond `limit`
  // for this tenant and model, the least recently used is closed; a limit of 0 keeps nothing.
  void Put(const Tenant& tenant, const std::string& model, std::unique_ptr<BackendSession> session,
           const Digest& held, size_t held_count, size_t limit, int64_t now_ns);
  // Closes sessions idle for max_idle_ns or more; returns how many.
  size_t Expire(int64_t now_ns, int64_t max_idle_ns);
  size_t size() const;
  size_t size(const Tenant& tenant) const;
  void Clear() { buckets_.clear(); }

 private:
  struct Entry {
    std::unique_ptr<BackendSession> session;
    Digest held{};
    size_t held_count = 0;
    int64_t last_used_ns = 0;
  };
  using Key = std::pair<std::string, std::string>;  // tenant, model
  std::map<Key, std::vector<Entry>> buckets_;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_CONVERSATION_CACHE_H_
