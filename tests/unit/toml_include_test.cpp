// policy/toml_include.hpp's stand-in for toml++ 3.3's
// is_non_ascii_horizontal_whitespace(): the same answers wherever the
// generated function has one, false where it has none (it reached
// __builtin_unreachable there), and what that means for a policy.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "loader.hpp"
#include "toml_include.hpp"

namespace {

namespace impl = toml::impl;

// Where toml++ 3.3's generated function reaches TOML_UNREACHABLE: the 1018-code
// point blocks 0, 11 and 63 of its table, but for the three it tests first.
bool generated_function_is_undefined(char32_t c) {
  if (c < U'\u00A0' || c > U'\uFEFF' || c == U'\u00A0' || c == U'\u3000' || c == U'\uFEFF') return false;
  const std::uint64_t block = (static_cast<std::uint64_t>(c) - 0xA0) / 0x3FA;
  return block == 0 || block == 11 || block == 63;
}

TEST(TomlInclude, WhitespaceAnswersMatchTomlppWhereItHasThem) {
  int whitespace = 0;
  int undefined = 0;
  for (char32_t c = 0; c <= U'\U0010FFFF'; ++c) {
    const bool ours = impl::is_non_ascii_horizontal_whitespace(c);
    whitespace += ours ? 1 : 0;
    if (generated_function_is_undefined(c)) {
      ++undefined;
      EXPECT_FALSE(ours) << "U+" << std::hex << static_cast<std::uint32_t>(c);
      continue;
    }
    ASSERT_EQ(ours, impl::sockbroker_unused_toml_is_non_ascii_horizontal_whitespace(c))
        << "U+" << std::hex << static_cast<std::uint32_t>(c);
  }
  EXPECT_EQ(whitespace, 20);  // "20 code units from 8 ranges", as toml++ counts them
  // U+00A1..U+0499, U+2C5E..U+3057 but U+3000, U+FB26..U+FEFE.
  EXPECT_EQ(undefined, (0x499 - 0xA1 + 1) + (0x3057 - 0x2C5E) + (0xFEFE - 0xFB26 + 1));
}

std::string first_error(const std::string& text) {
  auto result = sockbroker::policy::load_policy_text(text, "t.toml");
  return result.diagnostics.empty() ? "" : result.diagnostics.front().format();
}

TEST(TomlInclude, NonAsciiBetweenTokensIsAnError) {
  const std::string key_rule = " cannot be part of a key or a name: keys and socket names are written in ASCII "
                               "letters, digits, \"_\" and \"-\"";
  EXPECT_EQ(first_error("[socket.caf\u00e9]\nlisten = \"127.0.0.1:80\"\n"),
            "t.toml:1:12: error: \"\u00e9\" (U+00E9)" + key_rule);
  EXPECT_EQ(first_error("[socket.web]\nlisten = \"127.0.0.1:80\"\nbacklog = 5\u0445\n"),
            "t.toml:3:12: error: backlog = 5\u0445: \"\u0445\" (U+0445) is not ASCII; numbers, true and false are "
            "plain ASCII, and text goes between quotes");
  EXPECT_EQ(first_error("[socket.web]\nlisten \u00df= \"127.0.0.1:80\"\n"), "t.toml:2:8: error: \"\u00df\" (U+00DF)" + key_rule);
}

TEST(TomlInclude, NonAsciiAfterALineEndingBackslashIsRead) {
  // Valid TOML: the backslash swallows the line break and the indentation.
  auto result = sockbroker::policy::load_policy_text(
      "[socket.web]\nlisten = \"127.0.0.1:80\"\n[[socket.web.allow]]\nexecutable = \"\"\"/opt/\\\n    \u00e9t\u00e9/bin/server\"\"\"\n",
      "t.toml");
  ASSERT_TRUE(result.policy.has_value()) << (result.diagnostics.empty() ? "" : result.diagnostics.front().format());
  ASSERT_EQ(result.policy->sockets.size(), 1u);
  ASSERT_EQ(result.policy->sockets[0].allow.size(), 1u);
  EXPECT_EQ(result.policy->sockets[0].allow[0].executable, "/opt/\u00e9t\u00e9/bin/server");
}

}  // namespace
