#include "toml_include.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace sockbroker::policy::detail {
namespace {

// parse_key()'s precondition, as TOML_ASSERT_ASSUME spells it in toml++ 3.3's
// parser.inl: malformed table headers reach it, and parse_key() reports them.
constexpr std::string_view kPreconditionMalformedHeadersBreak = "is_bare_key_character(*cp) || is_string_delimiter(*cp)";

}  // namespace

void toml_assertion_failed(const char* expression, const char* file, int line) noexcept {
  if (expression == kPreconditionMalformedHeadersBreak) return;
  std::fprintf(stderr, "%s:%d: toml++ assertion failed: %s\n", file, line, expression);
  std::abort();
}

}  // namespace sockbroker::policy::detail
