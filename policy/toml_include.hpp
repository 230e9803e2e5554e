// toml++ (3.3, Debian 12's) as the policy library includes it: files that use
// toml++ include this header, never <toml++/toml.h> directly.
//
// toml++'s parser breaks one of its own preconditions on malformed table
// headers such as `[<web]` or `[[[web]]]`: parse_table_header() calls
// parse_key() on a character that cannot start a key (fixed upstream in
// marzer/tomlplusplus#301). parse_key() then handles it correctly and reports
// "expected bare key starting character or string delimiter", but the
// precondition is an assert() where assertions are compiled in (a typo in a
// policy would abort `sockbroker check` or the broker's reload), and where
// NDEBUG is defined it is TOML_ASSUME, which clang turns into
// __builtin_assume: undefined behaviour. So:
//   - with assertions, toml++'s failed assertions go to toml_assertion_failed(),
//     which aborts as assert() does, except for that one precondition;
//   - with NDEBUG, toml++ is included with its assertions compiled out and
//     NDEBUG hidden from it, so that it assumes nothing.
#pragma once

namespace sockbroker::policy::detail {

// A failed toml++ assertion: prints it and aborts, unless it is the
// precondition described above, which toml++ goes on to handle.
void toml_assertion_failed(const char* expression, const char* file, int line) noexcept;

}  // namespace sockbroker::policy::detail

#ifdef NDEBUG
#define SOCKBROKER_TOML_HIDES_NDEBUG
#undef NDEBUG
#define TOML_ASSERT(expr) static_cast<void>(0)
#else
#define TOML_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : ::sockbroker::policy::detail::toml_assertion_failed(#expr, __FILE__, __LINE__))
#endif

#include <toml++/toml.h>

#ifdef SOCKBROKER_TOML_HIDES_NDEBUG
#undef SOCKBROKER_TOML_HIDES_NDEBUG
#define NDEBUG 1
// <assert.h> defines assert() anew on every inclusion, after NDEBUG: if
// anything included above brought it in, this puts the no-op back.
#include <cassert>
#endif
