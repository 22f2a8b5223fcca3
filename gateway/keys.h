// API keys and the tenants they stand for. A key is shown once, when it is made, and only its
// salted SHA-256 hash is stored; a presented key is checked with a constant-time comparison.
//
// A key reads "sk-cell-<id>-<secret>": a public id (16 hex digits, what `key list` and `key
// remove` name and what finds the record) and a secret of 256 random bits (43 base64url
// characters). Because the secret is random and long, a fast salted hash is enough: there is no
// password to guess, so no key stretching is needed (a stolen keys file gives nothing to try).
//
// The keys file, one key per line ("#" comments allowed), written by `cellgate key add`:
//   ID TENANT CREATED_UNIX_SECONDS SALT_HEX SHA256_HEX
//
//   CH_ASSIGN_OR_RETURN(KeyStore keys, KeyStore::Load("/etc/cellhouse/gateway-keys"));
//   std::optional<std::string> tenant = keys.Authenticate(bearer_token);
//
//   CH_ASSIGN_OR_RETURN(NewKey made, MakeKey("alice", now));    // made.key: print it, once
//   keys.Add(made.record); CH_RETURN_IF_ERROR(SaveKeyFile(path, keys));
#ifndef CELLHOUSE_GATEWAY_KEYS_H_
#define CELLHOUSE_GATEWAY_KEYS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellhouse::gateway {

inline constexpr std::string_view kKeyPrefix = "sk-cell-";

struct KeyRecord {
  std::string id;  // 16 hex digits
  std::string tenant;
  int64_t created = 0;  // Unix seconds
  std::array<uint8_t, 16> salt{};
  std::array<uint8_t, 32> hash{};  // SHA-256(salt || secret)
};

struct NewKey {
  std::string key;  // the whole key, to print once
  KeyRecord record;
};

// Tenant names: 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit (they appear in
// logs, metrics-free, and will be asserted to celld).
Status CheckTenantName(std::string_view name);

// A new random key for `tenant`.
Result<NewKey> MakeKey(std::string_view tenant, int64_t now_unix);

class KeyStore {
 public:
  // Reads and parses a keys file. The file must not be writable by group or others (whoever can
  // write it can make keys): the error says so and how to fix it.
  static Result<KeyStore> Load(const std::string& path);
  // `origin` names the text in errors ("FILE:LINE: ...").
  static Result<KeyStore> Parse(std::string_view text, std::string_view origin);

  // The tenant of a presented key, or nullopt. The secret is compared in constant time.
  std::optional<std::string> Authenticate(std::string_view presented) const;

  const std::vector<KeyRecord>& records() const { return records_; }
  void Add(KeyRecord record) { records_.push_back(std::move(record)); }
  // Removes the key with this id, or every key of this tenant; returns how many went.
  size_t RemoveId(std::string_view id);
  size_t RemoveTenant(std::string_view tenant);
  // The file's text.
  std::string Serialize() const;

 private:
  std::vector<KeyRecord> records_;
};

// Replaces the keys file atomically (a temporary file in the same directory, fsync, rename),
// mode 0640. Concurrent `cellgate key` commands are serialised by a lock on the directory.
Status SaveKeyFile(const std::string& path, const KeyStore& keys);

// Runs `edit` on the file's keys under the directory lock, then saves; a missing file starts
// empty. What `cellgate key add/remove` use.
Status EditKeyFile(const std::string& path, const std::function<Status(KeyStore&)>& edit);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_KEYS_H_
