#include "gateway/key_command.h"

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "base/flags.h"
#include "base/strings.h"
#include "gateway/keys.h"

namespace cellhouse::gateway {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

int Fail(int code, const std::string& message) {
  static_cast<void>(std::fprintf(stderr, "cellgate key: %s\n", message.c_str()));
  return code;
}

std::string IsoTime(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char text[32] = "?";
  if (::gmtime_r(&t, &tm) != nullptr) {
    static_cast<void>(std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm));
  }
  return text;
}

}  // namespace

int RunKeyCommand(int argc, char** argv) {
  std::string sub = argc >= 2 ? argv[1] : "";
  std::string keys_path;
  std::string tenant;
  FlagSet flags("cellgate key add|list|remove --keys FILE [--tenant NAME] [ID]",
                "Manages the gateway's API keys. `add` makes a random key for a tenant, stores "
                "only its salted hash and prints the key once; `list` shows ids and tenants; "
                "`remove` deletes a key by id, or every key of --tenant. A running cellgate "
                "picks the change up on SIGHUP (systemctl reload cellgate).");
  flags.String("keys", &keys_path, "FILE", "the keys file (created by the first add)");
  flags.String("tenant", &tenant, "NAME", "the tenant a key serves");
  Result<std::vector<std::string>> rest = flags.Parse(argc - 2 < 0 ? 0 : argc - 2, argv + 2);
  if (!rest) return Fail(kExitUsage, rest.error().message());
  if (flags.help_requested() || sub.empty() || sub == "--help" || sub == "-h") {
    static_cast<void>(std::fputs(flags.Usage().c_str(), stdout));
    return sub.empty() ? kExitUsage : kExitOk;
  }
  if (keys_path.empty()) return Fail(kExitUsage, "--keys FILE is required");

  if (sub == "add") {
    if (tenant.empty() || !rest->empty()) {
      return Fail(kExitUsage, "usage: cellgate key add --keys FILE --tenant NAME");
    }
    std::string key;
    std::string id;
    Status saved = EditKeyFile(keys_path, [&](KeyStore& keys) -> Status {
      CH_ASSIGN_OR_RETURN(NewKey made, MakeKey(tenant, static_cast<int64_t>(std::time(nullptr))));
      key = made.key;
      id = made.record.id;
      keys.Add(std::move(made.record));
      return Ok();
    });
    if (!saved) return Fail(kExitRuntime, saved.error().message());
    // The key on stdout alone (scripts capture it); the rest on stderr.
    static_cast<void>(std::printf("%s\n", key.c_str()));
    static_cast<void>(std::fprintf(
        stderr,
        "cellgate key: made key %s for tenant %s. It is shown only now: only its hash is kept.\n",
        id.c_str(), tenant.c_str()));
    return kExitOk;
  }
  if (sub == "list") {
    Result<KeyStore> keys = KeyStore::Load(keys_path);
    if (!keys) return Fail(kExitRuntime, keys.error().message());
    static_cast<void>(std::printf("%-16s  %-20s  %s\n", "ID", "TENANT", "CREATED"));
    for (const KeyRecord& r : keys->records()) {
      static_cast<void>(std::printf("%-16s  %-20s  %s\n", r.id.c_str(), r.tenant.c_str(),
                                    IsoTime(r.created).c_str()));
    }
    return kExitOk;
  }
  if (sub == "remove") {
    if (tenant.empty() == (rest->size() != 1)) {
      return Fail(kExitUsage, "usage: cellgate key remove --keys FILE (ID | --tenant NAME)");
    }
    size_t removed = 0;
    Status saved = EditKeyFile(keys_path, [&](KeyStore& keys) -> Status {
      removed = tenant.empty() ? keys.RemoveId((*rest)[0]) : keys.RemoveTenant(tenant);
      if (removed == 0) {
        return Error(tenant.empty() ? "no key with id " + Quote((*rest)[0])
                                    : "no key of tenant " + Quote(tenant));
      }
      return Ok();
    });
    if (!saved) return Fail(kExitRuntime, saved.error().message());
    static_cast<void>(std::fprintf(stderr, "cellgate key: removed %zu key(s)\n", removed));
    return kExitOk;
  }
  return Fail(kExitUsage, "unknown subcommand " + Quote(sub) + "; use add, list or remove");
}

}  // namespace cellhouse::gateway
