#include "gateway/conversation_cache.h"

#include <sodium.h>

#include <algorithm>
#include <string_view>

namespace cellhouse::gateway {
namespace {

void AddField(crypto_hash_sha256_state* state, std::string_view field) {
  // Length first, so that ("ab", "c") and ("a", "bc") differ.
  uint64_t length = field.size();
  crypto_hash_sha256_update(state, reinterpret_cast<const unsigned char*>(&length), sizeof(length));
  crypto_hash_sha256_update(state, reinterpret_cast<const unsigned char*>(field.data()),
                            field.size());
}

}  // namespace

ConversationCache::Digest ConversationCache::Extend(const Digest& prefix,
                                                    const ChatMessage& message) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  crypto_hash_sha256_update(&state, prefix.data(), prefix.size());
  AddField(&state, message.role);
  AddField(&state, message.name);
  AddField(&state, message.content);
  Digest out{};
  crypto_hash_sha256_final(&state, out.data());
  return out;
}

std::vector<ConversationCache::Digest> ConversationCache::PrefixDigests(
    const std::vector<ChatMessage>& messages) {
  std::vector<Digest> out;
  out.reserve(messages.size() + 1);
  Digest start{};
  constexpr std::string_view kDomain = "cellgate conversation v1";
  crypto_hash_sha256(start.data(), reinterpret_cast<const unsigned char*>(kDomain.data()),
                     kDomain.size());
  out.push_back(start);
  for (const ChatMessage& m : messages) out.push_back(Extend(out.back(), m));
  return out;
}

std::optional<ConversationCache::Hit> ConversationCache::Take(const Tenant& tenant,
                                                              const std::string& model,
                                                              const std::vector<Digest>& prefix) {
  auto bucket = buckets_.find(Key(tenant.name, model));
  if (bucket == buckets_.end()) return std::nullopt;
  std::vector<Entry>& entries = bucket->second;
  // A session that died while idle is of no use: drop it.
  std::erase_if(entries, [](const Entry& e) { return e.session == nullptr || !e.session->idle(); });
  size_t request_count = prefix.empty() ? 0 : prefix.size() - 1;
  Entry* best = nullptr;
  for (Entry& e : entries) {
    if (e.held_count >= request_count) continue;  // a proper prefix only: something must be new
    if (e.held != prefix[e.held_count]) continue;
    if (best == nullptr || e.held_count > best->held_count) best = &e;
  }
  if (best == nullptr) {
    if (entries.empty()) buckets_.erase(bucket);
    return std::nullopt;
  }
  Hit hit{std::move(best->session), best->held_count};
  entries.erase(entries.begin() + (best - entries.data()));
  if (entries.empty()) buckets_.erase(bucket);
  return hit;
}

void ConversationCache::Put(const Tenant& tenant, const std::string& model,
                            std::unique_ptr<BackendSession> session, const Digest& held,
                            size_t held_count, size_t limit, int64_t now_ns) {
  if (limit == 0 || session == nullptr || !session->idle()) return;  // closed here
  std::vector<Entry>& entries = buckets_[Key(tenant.name, model)];
  entries.push_back(Entry{std::move(session), held, held_count, now_ns});
  while (entries.size() > limit) {
    auto oldest = std::min_element(
        entries.begin(), entries.end(),
        [](const Entry& a, const Entry& b) { return a.last_used_ns < b.last_used_ns; });
    entries.erase(oldest);  // the session closes with its handle
  }
}

size_t ConversationCache::Expire(int64_t now_ns, int64_t max_idle_ns) {
  size_t closed = 0;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    closed += std::erase_if(it->second, [&](const Entry& e) {
      return now_ns - e.last_used_ns >= max_idle_ns || e.session == nullptr || !e.session->idle();
    });
    it = it->second.empty() ? buckets_.erase(it) : std::next(it);
  }
  return closed;
}

size_t ConversationCache::size() const {
  size_t n = 0;
  for (const auto& [key, entries] : buckets_) n += entries.size();
  return n;
}

size_t ConversationCache::size(const Tenant& tenant) const {
  size_t n = 0;
  for (const auto& [key, entries] : buckets_) {
    if (key.first == tenant.name) n += entries.size();
  }
  return n;
}

}  // namespace cellhouse::gateway
