#include "printable.hpp"

#include <algorithm>

namespace sockbroker {

std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    } else {
      out += c;
    }
  }
  return out;
}

std::string quoted(std::string_view text) {
  constexpr std::size_t kMaxQuoted = 200;
  std::string out(1, '"');
  const std::size_t n = std::min(text.size(), kMaxQuoted);
  out.reserve(n + 2);
  for (std::size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else {
      out += printable(std::string_view(&text[i], 1));
    }
  }
  if (n < text.size()) out += "...";
  out += '"';
  return out;
}

}  // namespace sockbroker
