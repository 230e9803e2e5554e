// Thread-safe account lookups: the broker reloads the policy while serving,
// so the non-reentrant getpwnam()/getgrnam() are not an option.
#include "accounts.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace sockbroker::policy::detail {
namespace {

// No real entry needs more; a bigger one is a broken NSS backend, not a user.
constexpr std::size_t kMaxEntryBuffer = 1 << 20;

// getpw*_r documents these as "not found" from some backends.
bool means_not_found(int err) { return err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM; }

template <class Entry, class Id, class Lookup, class IdOf>
Result<std::optional<Id>> find(const std::string& name, const char* what, Lookup lookup, IdOf id_of) {
  std::vector<char> buffer(1024);
  for (;;) {
    Entry entry{};
    Entry* found = nullptr;
    int err = lookup(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (err == ERANGE && buffer.size() < kMaxEntryBuffer) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (found != nullptr) return std::optional<Id>(id_of(entry));
    if (means_not_found(err)) return std::optional<Id>();
    return errno_error(std::string("cannot look up ") + what + " \"" + name +
                           "\": " + std::error_code(err, std::generic_category()).message(),
                       err);
  }
}

// Failures are remembered too: a backend that is down for the first rule of a
// load is down for the ten thousandth, and need not time out again for it.
struct Remembered {
  int scopes = 0;
  std::unordered_map<std::string, Result<std::optional<uid_t>>> users;
  std::unordered_map<std::string, Result<std::optional<gid_t>>> groups;
};
thread_local Remembered remembered;

template <class Id, class Lookup>
Result<std::optional<Id>> cached(std::unordered_map<std::string, Result<std::optional<Id>>>& memory,
                                 const std::string& name, Lookup lookup) {
  if (remembered.scopes == 0) return lookup();
  if (auto it = memory.find(name); it != memory.end()) return it->second;
  return memory.emplace(name, lookup()).first->second;
}

}  // namespace

Result<std::optional<uid_t>> find_user(const std::string& name) {
  return cached<uid_t>(remembered.users, name, [&] {
    return find<passwd, uid_t>(name, "user", ::getpwnam_r, [](const passwd& p) { return p.pw_uid; });
  });
}

Result<std::optional<gid_t>> find_group(const std::string& name) {
  return cached<gid_t>(remembered.groups, name, [&] {
    return find<group, gid_t>(name, "group", ::getgrnam_r, [](const group& g) { return g.gr_gid; });
  });
}

AccountCache::AccountCache() { ++remembered.scopes; }

AccountCache::~AccountCache() {
  if (--remembered.scopes > 0) return;
  remembered.users.clear();
  remembered.groups.clear();
}

}  // namespace sockbroker::policy::detail
