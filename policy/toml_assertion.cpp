#include <array>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "toml_include.hpp"

namespace sockbroker::policy::detail {
namespace {

// Preconditions, as TOML_ASSERT_ASSUME spells them in toml++ 3.3's
// parser.inl, that the parser itself breaks on malformed input and then
// handles with a parse error (see toml_include.hpp; the fuzz corpus holds an
// input for each):
constexpr std::array<std::string_view, 2> kPreconditionsTomlppBreaks = {
    // parse_key(), from parse_table_header() on `[<web]` or `[[[web]]]`
    // (marzer/tomlplusplus#301): "expected bare key starting character or
    // string delimiter".
    "is_bare_key_character(*cp) || is_string_delimiter(*cp)",
    // parse_value(), from parse_array() on a '}' (`listen = [}`): "could not
    // determine value type".
    "!is_value_terminator(*cp)",
};

}  // namespace

void toml_assertion_failed(const char* expression, const char* file, int line) noexcept {
  for (std::string_view known : kPreconditionsTomlppBreaks) {
    if (expression == known) return;
  }
  std::fprintf(stderr, "%s:%d: toml++ assertion failed: %s\n", file, line, expression);
  std::abort();
}

}  // namespace sockbroker::policy::detail
