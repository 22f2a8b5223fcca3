#include "gateway/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/io.h"
#include "base/strings.h"
#include "base/unique_fd.h"

namespace cellhouse::gateway {
namespace {

constexpr size_t kIdHexDigits = 16;
constexpr size_t kSecretBytes = 32;
constexpr size_t kMaxKeyFileBytes = size_t{16} << 20;

bool IsHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

Status InitSodium() {
  // Idempotent and thread-safe; -1 only when the library cannot work at all.
  if (sodium_init() < 0) return Error("libsodium could not be initialised");
  return Ok();
}

std::array<uint8_t, 32> HashSecret(const std::array<uint8_t, 16>& salt, std::string_view secret) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  crypto_hash_sha256_update(&state, salt.data(), salt.size());
  crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                            secret.size());
  std::array<uint8_t, 32> out{};
  crypto_hash_sha256_final(&state, out.data());
  return out;
}

template <size_t N>
std::string Hex(const std::array<uint8_t, N>& bytes) {
  return HexEncode(std::as_bytes(std::span(bytes)));
}

template <size_t N>
bool FromHex(std::string_view hex, std::array<uint8_t, N>* out) {
  auto bytes = HexDecode(hex, "hash");
  if (!bytes || bytes->size() != N) return false;
  for (size_t i = 0; i < N; ++i) (*out)[i] = static_cast<uint8_t>((*bytes)[i]);
  return true;
}

// Splits a presented key into id and secret; false if it is not shaped like one of ours.
bool SplitKey(std::string_view key, std::string_view* id, std::string_view* secret) {
  if (!StartsWith(key, kKeyPrefix)) return false;
  key.remove_prefix(kKeyPrefix.size());
  if (key.size() < kIdHexDigits + 2 || key[kIdHexDigits] != '-') return false;
  *id = key.substr(0, kIdHexDigits);
  *secret = key.substr(kIdHexDigits + 1);
  for (char c : *id) {
    if (!IsHexDigit(c)) return false;
  }
  return secret->size() <= 128;
}

}  // namespace

Status CheckTenantName(std::string_view name) {
  bool ok =
      !name.empty() && name.size() <= 64 && name[0] != '.' && name[0] != '-' && name[0] != '_';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return Error("tenant name " + Quote(name) +
                 ": use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
                 "digit");
  }
  return Ok();
}

Result<NewKey> MakeKey(std::string_view tenant, int64_t now_unix) {
  CH_RETURN_IF_ERROR(CheckTenantName(tenant));
  CH_RETURN_IF_ERROR(InitSodium());
  NewKey made;
  std::array<uint8_t, kIdHexDigits / 2> id{};
  std::array<uint8_t, kSecretBytes> secret{};
  randombytes_buf(id.data(), id.size());
  randombytes_buf(secret.data(), secret.size());
  randombytes_buf(made.record.salt.data(), made.record.salt.size());
  char encoded[sodium_base64_ENCODED_LEN(kSecretBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(encoded, sizeof(encoded), secret.data(), secret.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(secret.data(), secret.size());
  std::string secret_text(encoded);
  sodium_memzero(encoded, sizeof(encoded));
  made.record.id = Hex(id);
  made.record.tenant = std::string(tenant);
  made.record.created = now_unix;
  made.record.hash = HashSecret(made.record.salt, secret_text);
  made.key = std::string(kKeyPrefix) + made.record.id + "-" + secret_text;
  return made;
}

Result<KeyStore> KeyStore::Parse(std::string_view text, std::string_view origin) {
  KeyStore store;
  size_t line_number = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_number;
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    std::string where = std::string(origin) + ":" + std::to_string(line_number);
    std::vector<std::string_view> fields;
    for (std::string_view f : Split(line, ' ')) {
      if (!f.empty()) fields.push_back(f);
    }
    KeyRecord r;
    if (fields.size() != 5) {
      return Error(where + ": expected ID TENANT CREATED SALT HASH, found " +
                   std::to_string(fields.size()) + " fields");
    }
    r.id = std::string(fields[0]);
    bool id_ok = r.id.size() == kIdHexDigits;
    for (char c : r.id) id_ok = id_ok && IsHexDigit(c);
    if (!id_ok) return Error(where + ": the key id " + Quote(r.id) + " is not 16 hex digits");
    r.tenant = std::string(fields[1]);
    Status tenant_ok = CheckTenantName(r.tenant);
    if (!tenant_ok) return std::move(tenant_ok).error().Context(where);
    Result<int64_t> created = ParseInt64(fields[2], "CREATED");
    if (!created) return std::move(created).error().Context(where);
    r.created = *created;
    if (!FromHex(fields[3], &r.salt) || !FromHex(fields[4], &r.hash)) {
      return Error(where + ": SALT must be 32 and HASH 64 lowercase hex digits");
    }
    for (const KeyRecord& other : store.records_) {
      if (other.id == r.id) return Error(where + ": the key id " + r.id + " appears twice");
    }
    store.records_.push_back(std::move(r));
  }
  return store;
}

Result<KeyStore> KeyStore::Load(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Error::FromErrno(errno, "open the keys file " + Quote(path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::FromErrno(errno, "fstat " + Quote(path));
  if (!S_ISREG(st.st_mode)) return Error("the keys file " + Quote(path) + " is not a file");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Error("the keys file " + Quote(path) +
                 " is writable by group or others, who could add keys; run chmod go-w on it. "
                 "Refusing.");
  }
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "read " + Quote(path));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxKeyFileBytes) return Error("the keys file " + Quote(path) + " is huge");
  }
  return Parse(text, path);
}

std::optional<std::string> KeyStore::Authenticate(std::string_view presented) const {
  std::string_view id;
  std::string_view secret;
  if (!SplitKey(presented, &id, &secret)) return std::nullopt;
  const KeyRecord* found = nullptr;
  for (const KeyRecord& r : records_) {
    if (r.id == id) found = &r;
  }
  // An unknown id costs the same hash and comparison as a known one.
  static const KeyRecord kNobody{};
  const KeyRecord& r = found != nullptr ? *found : kNobody;
  std::array<uint8_t, 32> hash = HashSecret(r.salt, secret);
  bool equal = sodium_memcmp(hash.data(), r.hash.data(), hash.size()) == 0;
  if (found == nullptr || !equal) return std::nullopt;
  return found->tenant;
}

size_t KeyStore::RemoveId(std::string_view id) {
  return std::erase_if(records_, [&](const KeyRecord& r) { return r.id == id; });
}

size_t KeyStore::RemoveTenant(std::string_view tenant) {
  return std::erase_if(records_, [&](const KeyRecord& r) { return r.tenant == tenant; });
}

std::string KeyStore::Serialize() const {
  std::string out =
      "# cellgate API keys (cellgate key add/list/remove). One key per line:\n"
      "# ID TENANT CREATED SALT SHA256(SALT || SECRET). The keys themselves are not stored.\n";
  for (const KeyRecord& r : records_) {
    out += r.id + " " + r.tenant + " " + std::to_string(r.created) + " " + Hex(r.salt) + " " +
           Hex(r.hash) + "\n";
  }
  return out;
}

namespace {

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Status SaveKeyFile(const std::string& path, const KeyStore& keys) {
  std::string tmp = path + ".XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno(errno, "create a temporary file beside " + Quote(path));
  Status written = Ok();
  if (::fchmod(fd.get(), 0640) != 0) written = Error::FromErrno(errno, "fchmod " + Quote(tmp));
  if (written) written = WriteFull(fd.get(), keys.Serialize(), tmp);
  if (written && ::fsync(fd.get()) != 0) written = Error::FromErrno(errno, "fsync " + Quote(tmp));
  if (written && ::rename(tmp.c_str(), path.c_str()) != 0) {
    written = Error::FromErrno(errno, "rename " + Quote(tmp) + " to " + Quote(path));
  }
  if (!written) static_cast<void>(::unlink(tmp.c_str()));
  return written;
}

Status EditKeyFile(const std::string& path, const std::function<Status(KeyStore&)>& edit) {
  std::string dir = DirectoryOf(path);
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return Error::FromErrno(errno, "open the directory " + Quote(dir));
  if (::flock(dir_fd.get(), LOCK_EX) != 0) return Error::FromErrno(errno, "lock " + Quote(dir));
  KeyStore keys;
  if (::access(path.c_str(), F_OK) == 0) {
    CH_ASSIGN_OR_RETURN(keys, KeyStore::Load(path));
  }
  CH_RETURN_IF_ERROR(edit(keys));
  return SaveKeyFile(path, keys);  // the lock goes with dir_fd
}

}  // namespace cellhouse::gateway
