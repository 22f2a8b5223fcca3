// DetectDriver: which cgroup layout this host has, decided from statfs(2) f_type of the mounts
// and from the controllers they offer (cgroup.controllers), as the kernel's cgroup-v2.rst and
// systemd's "test for features, not kernel versions" recommend.
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>

#include "base/strings.h"
#include "supervisor/cgroup/cgroupfs_util.h"
#include "supervisor/cgroup/driver.h"
#include "supervisor/cgroup/drivers.h"

namespace cellhouse::cgroup {

namespace {

using internal::JoinPath;

constexpr const char* kRequired[] = {"memory", "pids", "cpu"};

std::string Hex(int64_t value) {
  char buf[32];
  static_cast<void>(
      std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(value)));
  return buf;
}

std::string JoinWords(const std::vector<std::string>& words, std::string_view sep = ", ") {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) {
      out += sep;
    }
    out += w;
  }
  return out;
}

// "a", "a or b", "a, b or c".
std::string JoinAlternatives(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) {
      out += i + 1 == words.size() ? " or " : ", ";
    }
    out += words[i];
  }
  return out;
}

std::string SetWords(const std::set<std::string>& set) {
  return JoinWords(std::vector<std::string>(set.begin(), set.end()), " ");
}

std::vector<std::string> MissingRequired(const std::set<std::string>& offered) {
  std::vector<std::string> missing;
  for (const char* c : kRequired) {
    if (offered.count(c) == 0) {
      missing.emplace_back(c);
    }
  }
  return missing;
}

Status CheckSubtree(std::string_view subtree) {
  if (subtree.empty()) {
    return Ok();
  }
  for (std::string_view part : Split(subtree, '/')) {
    if (!internal::IsValidCgroupName(part)) {
      return Error("cgroup subtree " + Quote(subtree) +
                   ": each component must be 1..64 of [A-Za-z0-9_.-], not starting with '.'. "
                   "Refusing.");
    }
  }
  return Ok();
}

const CgroupMembership* FindV2(const std::vector<CgroupMembership>& members) {
  for (const CgroupMembership& m : members) {
    if (m.hierarchy == 0 && m.controllers.empty()) {
      return &m;
    }
  }
  return nullptr;
}

const CgroupMembership* FindV1(const std::vector<CgroupMembership>& members,
                               std::string_view controller) {
  for (const CgroupMembership& m : members) {
    if (m.hierarchy == 0) {
      continue;
    }
    for (const std::string& c : m.controllers) {
      if (c == controller) {
        return &m;
      }
    }
  }
  return nullptr;
}

// The own cgroup's controllers on a cgroup2 mount, or an empty set when unreadable.
std::set<std::string> V2Controllers(const Fs& fs, const std::string& mount,
                                    const std::string& own) {
  Result<std::set<std::string>> set =
      internal::ReadControllerSet(fs, JoinPath(JoinPath(mount, own), "cgroup.controllers"));
  return set ? *set : std::set<std::string>();
}

// The v1 mount of `controller` under root: "<root>/<co-mounted list>" or "<root>/<controller>",
// whichever is a v1 cgroup file system holding celld's cgroup.
std::optional<internal::V1Hierarchy> FindV1Mount(const Fs& fs, const std::string& root,
                                                 const CgroupMembership& member,
                                                 const std::string& controller) {
  std::vector<std::string> candidates = {JoinPath(root, JoinWords(member.controllers, ",")),
                                         JoinPath(root, controller)};
  for (const std::string& mount : candidates) {
    Result<int64_t> type = fs.FilesystemType(mount);
    if (!type || *type != kCgroupSuperMagic) {
      continue;
    }
    if (!fs.Exists(JoinPath(JoinPath(mount, member.path), "cgroup.procs"))) {
      continue;
    }
    return internal::V1Hierarchy{.controller = controller, .mount = mount, .own = member.path};
  }
  return std::nullopt;
}

Result<std::unique_ptr<Driver>> DetectOnCgroup2Root(const Fs& fs, const Processes& processes,
                                                    const DriverOptions& options,
                                                    const std::vector<CgroupMembership>& members) {
  const std::string& root = options.cgroup_root;
  const CgroupMembership* v2 = FindV2(members);
  if (v2 == nullptr) {
    return Error("cgroup detection: '" + root + "' is a cgroup2 mount but '" +
                 options.self_cgroup_file + "' has no \"0::\" line. Refusing.");
  }
  std::set<std::string> offered = V2Controllers(fs, root, v2->path);
  std::vector<std::string> missing = MissingRequired(offered);
  if (!missing.empty()) {
    return Error("cgroup v2 at '" + root + "': celld's cgroup '" + v2->path + "' does not offer " +
                 JoinWords(missing) + " (its cgroup.controllers lists: " +
                 (offered.empty() ? std::string("nothing") : SetWords(offered)) +
                 "); start celld with systemd Delegate=yes, or enable them in the parent's "
                 "cgroup.subtree_control. Refusing.");
  }
  internal::V2Layout layout{.mount = root, .own = v2->path, .controllers = offered};
  layout.why = "'" + root + "' is a cgroup2 mount and celld's cgroup '" + v2->path +
               "' offers memory, pids and cpu";
  return internal::MakeV2Driver(fs, processes, options, std::move(layout));
}

Result<std::unique_ptr<Driver>> DetectOnTmpfsRoot(const Fs& fs, const Processes& processes,
                                                  const DriverOptions& options,
                                                  const std::vector<CgroupMembership>& members) {
  const std::string& root = options.cgroup_root;
  internal::V1Layout v1;
  std::vector<std::string> v1_found;
  std::vector<std::string> v1_missing;
  for (const char* c : {"memory", "pids", "cpu", "cpuacct"}) {
    const CgroupMembership* member = FindV1(members, c);
    std::optional<internal::V1Hierarchy> h;
    if (member != nullptr) {
      h = FindV1Mount(fs, root, *member, c);
    }
    if (h) {
      v1.hierarchies.push_back(*h);
      v1_found.emplace_back(c);
    } else if (std::string_view(c) != "cpuacct") {
      v1_missing.emplace_back(c);
    }
  }

  // The unified mount of a hybrid layout (systemd's "hybrid" mode mounts it at unified/).
  std::string unified = JoinPath(root, "unified");
  Result<int64_t> unified_type = fs.FilesystemType(unified);
  bool has_unified = unified_type && *unified_type == kCgroup2SuperMagic;
  const CgroupMembership* v2 = FindV2(members);
  std::set<std::string> unified_offered;
  if (has_unified && v2 != nullptr) {
    unified_offered = V2Controllers(fs, unified, v2->path);
  }
  std::vector<std::string> unified_missing = MissingRequired(unified_offered);

  if (v1_missing.empty()) {
    v1.why = "'" + root + "' is a tmpfs of v1 hierarchies";
    if (has_unified) {
      v1.why += " and the cgroup2 mount at '" + unified + "' has no " +
                JoinAlternatives(unified_missing) + " controller";
    }
    return internal::MakeV1Driver(fs, processes, options, std::move(v1));
  }
  if (has_unified && v2 != nullptr && unified_missing.empty()) {
    internal::V2Layout layout{.mount = unified, .own = v2->path, .controllers = unified_offered};
    layout.why = "'" + root + "' is a tmpfs, no v1 hierarchy holds " + JoinWords(v1_missing) +
                 ", and the cgroup2 mount at '" + unified + "' offers memory, pids and cpu";
    return internal::MakeV2Driver(fs, processes, options, std::move(layout));
  }
  std::string message = "cgroup detection: '" + root + "' is a tmpfs of v1 mounts with " +
                        (v1_found.empty() ? std::string("no usable hierarchy")
                                          : "hierarchies for " + JoinWords(v1_found)) +
                        " but none for " + JoinWords(v1_missing);
  if (has_unified) {
    message += ", and the cgroup2 mount at '" + unified + "' offers " +
               (unified_offered.empty() ? std::string("no controller") : SetWords(unified_offered));
  }
  message += "; celld needs memory, pids and cpu under one cgroup version. Refusing.";
  return Error(std::move(message));
}

}  // namespace

Result<std::vector<CgroupMembership>> ParseProcCgroup(std::string_view text) {
  std::vector<CgroupMembership> out;
  int line_number = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_number;
    if (Trim(line).empty()) {
      continue;
    }
    size_t first = line.find(':');
    size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) {
      return Error("/proc/self/cgroup line " + std::to_string(line_number) + ": " + Quote(line) +
                   " is not hierarchy:controllers:path");
    }
    CgroupMembership m;
    CH_ASSIGN_OR_RETURN(int64_t id, ParseInt64(line.substr(0, first), "cgroup hierarchy id"));
    m.hierarchy = static_cast<int>(id);
    std::string_view list = line.substr(first + 1, second - first - 1);
    for (std::string_view c : Split(list, ',')) {
      // "name=systemd" names a hierarchy without a controller: keep it, it matches nothing.
      if (!c.empty()) {
        m.controllers.emplace_back(c);
      }
    }
    m.path = std::string(line.substr(second + 1));
    if (m.path.empty() || m.path.front() != '/') {
      return Error("/proc/self/cgroup line " + std::to_string(line_number) + ": path " +
                   Quote(m.path) + " is not absolute");
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string InstanceSubtree(std::string_view socket_path) {
  constexpr size_t kMaxName = 64;
  std::string name = "celld";
  for (std::string_view part : Split(socket_path, '/')) {
    if (part.empty()) {
      continue;
    }
    name += '-';
    for (char c : part) {
      bool ok =
          std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
      name += ok ? c : '_';
    }
  }
  if (name.size() <= kMaxName && internal::IsValidCgroupName(name)) {
    return name;
  }
  // FNV-1a: stable across runs and builds, unlike std::hash.
  uint64_t hash = 14695981039346656037ULL;
  for (char c : socket_path) {
    hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  }
  char buf[32];
  static_cast<void>(
      std::snprintf(buf, sizeof(buf), "celld-%016llx", static_cast<unsigned long long>(hash)));
  return buf;
}

Result<std::unique_ptr<Driver>> DetectDriver(const Fs& fs, const Processes& processes,
                                             const DriverOptions& options) {
  CH_RETURN_IF_ERROR(CheckSubtree(options.subtree));
  CH_ASSIGN_OR_RETURN(std::string self, fs.ReadFile(options.self_cgroup_file));
  CH_ASSIGN_OR_RETURN(std::vector<CgroupMembership> members, ParseProcCgroup(self));
  CH_ASSIGN_OR_RETURN(int64_t root_type, fs.FilesystemType(options.cgroup_root));
  if (root_type == kCgroup2SuperMagic) {
    return DetectOnCgroup2Root(fs, processes, options, members);
  }
  if (root_type == kTmpfsMagic) {
    return DetectOnTmpfsRoot(fs, processes, options, members);
  }
  return Error("cgroup detection: '" + options.cgroup_root +
               "' is neither a cgroup2 mount nor a tmpfs of cgroup v1 mounts (statfs f_type " +
               Hex(root_type) + "); mount cgroup2 there. Refusing.");
}

}  // namespace cellhouse::cgroup
