// Resolving user and group names for the policy (NSS: files, LDAP, systemd's
// dynamic users...). Internal to the policy library.
#pragma once

#include <sys/types.h>

#include <sockbroker/fd.hpp>

#include <optional>
#include <string>

namespace sockbroker::policy::detail {

// The id of the named account, nullopt when there is no such account, or an
// error when the lookup itself failed (an NSS backend down): a policy must not
// silently lose a rule because LDAP was unreachable.
[[nodiscard]] Result<std::optional<uid_t>> find_user(const std::string& name);
[[nodiscard]] Result<std::optional<gid_t>> find_group(const std::string& name);

// While one exists on a thread, that thread's lookups are remembered: a policy
// load names the same few accounts over and over (10,000 sockets, one rule
// each), and every uncached lookup may scan /etc/passwd or ask LDAP. Scoped to
// one load, so a reload still sees accounts added since. Scopes nest; the
// outermost one forgets.
class AccountCache {
 public:
  AccountCache();
  ~AccountCache();
  AccountCache(const AccountCache&) = delete;
  AccountCache& operator=(const AccountCache&) = delete;
};

}  // namespace sockbroker::policy::detail
