// Reading policy files and checking what spans them: duplicate socket names,
// [broker] keys set twice, and sockets whose addresses cannot both be bound.
#include "loader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sockbroker/fd.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <map>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "accounts.hpp"
#include "conflict.hpp"
#include "document.hpp"
#include "sort_records.hpp"
#include "unix_path_safety.hpp"

namespace sockbroker::policy {
namespace {

// A policy is a few kilobytes; anything near this is a mistake (a log file
// given as --policy), and toml++ builds the whole tree in memory.
constexpr std::size_t kMaxPolicyBytes = 4 << 20;

Error read_error(int err) {
  return errno_error("cannot read: " + std::error_code(err, std::generic_category()).message(), err);
}

Result<std::string> read_bounded(const std::string& path) {
  // O_NONBLOCK so that a FIFO given by mistake cannot hang a reload; it is
  // refused below as not a regular file.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return read_error(errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return read_error(errno);
  if (S_ISDIR(st.st_mode)) return read_error(EISDIR);
  if (!S_ISREG(st.st_mode)) return errno_error("cannot read: not a regular file", EINVAL);
  // st_size only sizes the first buffer: the file may change while it is
  // read, so the bound is enforced on the bytes actually read.
  std::string text(std::min<std::size_t>(static_cast<std::size_t>(st.st_size), kMaxPolicyBytes) + 1, '\0');
  std::size_t used = 0;
  for (;;) {
    if (used == text.size()) {
      if (text.size() > kMaxPolicyBytes) break;
      text.resize(std::min(text.size() * 2, kMaxPolicyBytes + 1));
    }
    ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return read_error(errno);
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  if (used > kMaxPolicyBytes) {
    return errno_error("file is larger than " + std::to_string(kMaxPolicyBytes) + " bytes", EFBIG);
  }
  text.resize(used);
  return text;
}

// One read(2) with a buffer big enough for the whole value: the kernel's
// integer sysctl handlers return EOF to any read at a non-zero offset, so a
// value read in pieces comes back cut short.
std::optional<long> read_sysctl(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return std::nullopt;
  char buffer[64];
  ssize_t n = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (n <= 0) return std::nullopt;
  buffer[n] = '\0';
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(buffer, &end, 10);
  if (errno != 0 || end == buffer) return std::nullopt;
  return value;
}

// The settings of one [broker] key, copied from the document that set it.
void apply_broker_key(const std::string& key, const BrokerSettings& from, BrokerSettings& to) {
  if (key == "admin_group") to.admin_group = from.admin_group;
  if (key == "control_mode") to.control_mode = from.control_mode;
  if (key == "max_clients") to.max_clients = from.max_clients;
  if (key == "max_clients_per_uid") to.max_clients_per_uid = from.max_clients_per_uid;
  if (key == "request_timeout_ms") to.request_timeout_ms = from.request_timeout_ms;
  if (key == "max_grants_per_client") to.max_grants_per_client = from.max_grants_per_client;
  if (key == "audit_failure") to.audit_failure = from.audit_failure;
  if (key == "audit_rate_per_uid") to.audit_rate_per_uid = from.audit_rate_per_uid;
  if (key == "audit_burst_per_uid") to.audit_burst_per_uid = from.audit_burst_per_uid;
}

// ---------------------------------------------------------------------------
// toml++'s syntax errors, in the words of the rest of the loader.
//
// toml++ 3.3 says "Error while parsing CONTEXT: DETAIL" and points at the
// character it stopped on: "leading zeroes are prohibited" after
// `socket_mode = 0660`, "unescaped control characters" at the end of a line
// whose string was never closed. An operator needs what to write instead, at
// the place the mistake starts, so the common mistakes are recognised from
// toml++'s context and detail and from the line itself; any other keeps
// toml++'s detail.

struct SyntaxError {
  std::size_t line = 1;    // 1-based, as toml++ counts
  std::size_t column = 1;  // 1-based, in code points, as toml++ counts
  std::string message;
};

// The code point at s[i] (UTF-8) and its length; U+FFFD and 1 for a byte that
// starts none (toml++ stops at invalid UTF-8, so that one can be reached), and
// 0 past the end.
std::pair<char32_t, std::size_t> code_point_at(std::string_view s, std::size_t i) {
  if (i >= s.size()) return {0, 0};
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return {lead, 1};
  const std::size_t length = lead >= 0xF8 ? 0 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
  if (length == 0 || i + length > s.size()) return {U'\uFFFD', 1};
  char32_t c = lead & (0x3Fu >> (length - 1));
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {U'\uFFFD', 1};
    c = (c << 6) | (byte(i + k) & 0x3Fu);
  }
  return {c, length};
}

// 1 + the code points before byte `byte` of line.
std::size_t column_of(std::string_view line, std::size_t byte) {
  std::size_t column = 1;
  for (std::size_t i = 0; i < byte && i < line.size(); i += code_point_at(line, i).second) ++column;
  return column;
}

std::string code_point_name(char32_t c) {
  char name[16];
  std::snprintf(name, sizeof name, "U+%04X", static_cast<unsigned>(c));
  return name;
}

std::string_view trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// The line of text that starts at byte `start`, without its line break.
std::string_view line_at(std::string_view text, std::size_t start) {
  std::string_view line = text.substr(start, text.find('\n', start) - start);
  if (line.ends_with('\r')) line.remove_suffix(1);
  return line;
}

// Byte offsets of the lines that begin outside any string (where a key or a
// table header can be), and the string still open at `end`: just enough of
// TOML's lexical rules to follow text toml++ has already accepted.
struct Lexed {
  std::vector<std::size_t> code_lines;
  std::optional<std::size_t> open_string;  // where its opening quote is
  std::string_view delimiter;              // its quote: ", ', """ or '''
};

Lexed lex(std::string_view text, std::size_t end) {
  enum class In { code, comment, basic, literal, multi_basic, multi_literal };
  In in = In::code;
  Lexed out;
  std::size_t opened = 0;
  end = std::min(end, text.size());
  // A multi-line string's content may end with one or two quotes: the last
  // three of the run close it.
  const auto closes = [&](std::size_t& i, char quote) {
    std::size_t run = 0;
    while (i + run < text.size() && text[i + run] == quote) ++run;
    if (run < 3) return false;
    i += std::min<std::size_t>(run, 5) - 1;
    return true;
  };
  for (std::size_t i = 0; i < end; ++i) {
    if ((i == 0 || text[i - 1] == '\n') && in == In::code) out.code_lines.push_back(i);
    const char c = text[i];
    switch (in) {
      case In::code:
        if (c == '#') {
          in = In::comment;
        } else if (c == '"' || c == '\'') {
          opened = i;
          const bool multi = text.substr(i, 3) == std::string(3, c);
          in = c == '"' ? (multi ? In::multi_basic : In::basic) : (multi ? In::multi_literal : In::literal);
          if (multi) i += 2;
        }
        break;
      case In::comment:
        if (c == '\n') in = In::code;
        break;
      case In::basic:
        if (c == '\\') {
          ++i;
        } else if (c == '"' || c == '\n') {
          in = In::code;
        }
        break;
      case In::literal:
        if (c == '\'' || c == '\n') in = In::code;
        break;
      case In::multi_basic:
        if (c == '\\') {
          ++i;
        } else if (c == '"' && closes(i, '"')) {
          in = In::code;
        }
        break;
      case In::multi_literal:
        if (c == '\'' && closes(i, '\'')) in = In::code;
        break;
    }
  }
  if (in == In::basic || in == In::literal || in == In::multi_basic || in == In::multi_literal) {
    out.open_string = opened;
    out.delimiter = in == In::basic ? "\"" : in == In::literal ? "'" : in == In::multi_basic ? "\"\"\"" : "'''";
  }
  return out;
}

// The text without blanks outside quotes: `socket . web` and `socket.web`
// name the same table.
std::string without_blanks(std::string_view text) {
  std::string out;
  char quote = 0;
  for (char c : text) {
    if (quote == 0 && (c == ' ' || c == '\t')) continue;
    if (c == '"' || c == '\'') quote = quote == c ? 0 : (quote == 0 ? c : quote);
    out += c;
  }
  return out;
}

// "KEY = VALUE # comment" as written: KEY and VALUE trimmed, and the byte of
// the line where each starts. No '=' outside quotes: key is empty.
struct Assignment {
  std::string_view key;
  std::size_t key_at = 0;
  std::string_view value;
  std::size_t value_at = 0;
};

Assignment assignment(std::string_view line) {
  Assignment out;
  char quote = 0;
  std::size_t equals = std::string_view::npos, end = line.size();
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"') {
        ++i;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      end = i;
      break;
    } else if (c == '=' && equals == std::string_view::npos) {
      equals = i;
    }
  }
  if (equals == std::string_view::npos) return out;
  out.key = trim(line.substr(0, equals));
  out.key_at = static_cast<std::size_t>(line.find_first_not_of(" \t"));
  out.value = trim(line.substr(equals + 1, end - equals - 1));
  out.value_at = out.value.empty() ? equals + 1 : static_cast<std::size_t>(out.value.data() - line.data());
  return out;
}

bool is_header(std::string_view line) { return trim(line).starts_with('['); }

// A table header's name, for comparing two headers: without its brackets, a
// comment or blanks around the dots.
std::string header_name(std::string_view line) {
  std::string_view text = trim(line);
  text.remove_prefix(text.starts_with("[[") ? 2 : 1);
  std::size_t end = 0;
  char quote = 0;
  for (; end < text.size(); ++end) {
    const char c = text[end];
    if (quote == 0 && (c == ']' || c == '#')) break;
    if (c == '"' || c == '\'') quote = quote == c ? 0 : (quote == 0 ? c : quote);
  }
  return without_blanks(text.substr(0, end));
}

// The header as the operator wrote it, without a comment after it.
std::string_view written_header(std::string_view line) {
  const std::string_view text = trim(line);
  const auto comment = text.find('#');
  const auto close = text.substr(0, comment).rfind(']');
  if (close != std::string_view::npos) return text.substr(0, close + 1);
  return trim(text.substr(0, comment));
}

// Part of the file quoted in a message: cut, so that one line stays short.
std::string shown(std::string_view text) {
  constexpr std::size_t kMax = 60;
  std::size_t i = 0, count = 0;
  while (i < text.size() && count < kMax) {
    i += code_point_at(text, i).second;
    ++count;
  }
  return i < text.size() ? std::string(text.substr(0, i)) + "..." : std::string(text);
}

std::string with_article(std::string_view noun) {
  const bool vowel = !noun.empty() && std::string_view("aeiou").find(noun.front()) != std::string_view::npos;
  return (vowel ? "an " : "a ") + std::string(noun);
}

constexpr std::string_view kHeaderForms = "a socket is [socket.NAME], a rule [[socket.NAME.allow]]";

class SyntaxExplainer {
 public:
  SyntaxExplainer(std::string_view text, const std::string& file, const toml::parse_error& error)
      : text_(text), file_(file) {
    std::string_view description = error.description();
    constexpr std::string_view kPrefix = "Error while parsing ";
    if (description.starts_with(kPrefix)) {
      description.remove_prefix(kPrefix.size());
      const auto colon = description.find(": ");
      if (colon != std::string_view::npos) {
        context_ = description.substr(0, colon);
        description.remove_prefix(colon + 2);
      }
    }
    detail_ = description;

    // The line toml++ stopped on, and where in it: a line past the end of the
    // text is its last one, a column past the end of a line is its end.
    const std::size_t wanted = std::max<std::size_t>(error.source().begin.line, 1);
    while (line_number_ < wanted) {
      const auto next = text_.find('\n', line_start_);
      if (next == std::string_view::npos) break;
      line_start_ = next + 1;
      ++line_number_;
    }
    line_ = line_at(text_, line_start_);
    for (std::size_t column = 1; column < error.source().begin.column && at_ < line_.size(); ++column) {
      at_ += code_point_at(line_, at_).second;
    }
    at_ = std::min(at_, line_.size());
  }

  [[nodiscard]] SyntaxError explain() const {
    if (detail_.find("invalid utf-8") != std::string_view::npos) {
      // toml++ points at the character before the sequence.
      std::size_t bad = at_;
      while (bad < line_.size() && code_point_at(line_, bad) != std::pair<char32_t, std::size_t>(U'\uFFFD', 1)) {
        bad += code_point_at(line_, bad).second;
      }
      return at(bad < line_.size() ? bad : at_, "the file is not UTF-8 text here; a policy is written in UTF-8");
    }
    if (auto e = non_ascii()) return *e;
    if (auto e = string_mistake()) return *e;
    if (detail_.starts_with("leading zero")) return leading_zero();
    if (detail_.starts_with("cannot redefine existing ")) return redefined();
    if (is_header(line_)) {
      if (auto e = header_mistake()) return *e;
    }
    if (auto e = key_value_mistake()) return *e;
    if (auto e = value_mistake()) return *e;
    if (detail_.starts_with("expected '\\n' after '\\r'")) {
      return here("a carriage return (\\r) that does not end a line; lines end with \\n or \\r\\n");
    }
    if (context_ == "array" && detail_.starts_with("encountered end-of-file")) {
      return here("the file ends inside an array; close it with \"]\"");
    }
    if (context_ == "inline table" && at_line_end()) {
      return here("an inline table { ... } must be closed on the line it opens; write it on one line, or as a "
                  "[table] with a header");
    }
    if (context_ == "array" && detail_.starts_with("expected comma")) {
      return here("unexpected " + found() + " in an array; separate its values with \",\" and close it with \"]\"");
    }
    if (context_.empty()) return here(std::string(detail_));
    return here("not valid TOML in this " + std::string(context_) + ": " + std::string(detail_));
  }

 private:
  [[nodiscard]] SyntaxError at(std::size_t byte_in_line, std::string message) const {
    return SyntaxError{line_number_, column_of(line_, byte_in_line), std::move(message)};
  }
  [[nodiscard]] SyntaxError here(std::string message) const { return at(at_, std::move(message)); }

  [[nodiscard]] bool at_line_end() const { return at_ >= line_.size(); }

  // The character toml++ stopped on, for "unexpected X".
  [[nodiscard]] std::string found() const {
    if (at_line_end()) return "the end of the line";
    return sockbroker::quoted(line_.substr(at_, code_point_at(line_, at_).second));
  }

  // "FILE:LINE:COL" of byte `offset` of the text.
  [[nodiscard]] std::string location(std::size_t offset) const {
    const auto before = text_.substr(0, offset);
    const std::size_t start = before.rfind('\n') == std::string_view::npos ? 0 : before.rfind('\n') + 1;
    const auto line = static_cast<int>(std::count(before.begin(), before.end(), '\n') + 1);
    const auto column = static_cast<int>(column_of(text_.substr(start), offset - start));
    return detail::to_string(SourcePos{file_, line, column});
  }

  // A pasted character: a typographic quote, a no-break space, a letter from
  // another alphabet. toml++ names it only as what it did not expect.
  [[nodiscard]] std::optional<SyntaxError> non_ascii() const {
    if (at_line_end() || static_cast<unsigned char>(line_[at_]) < 0x80) return std::nullopt;
    const auto [c, length] = code_point_at(line_, at_);
    const std::string name = code_point_name(c);
    const std::string written(line_.substr(at_, length));
    if (c == U'\u201C' || c == U'\u201D' || c == U'\u201E' || c == U'\u2018' || c == U'\u2019' || c == U'\u00AB' ||
        c == U'\u00BB') {
      return here(written + " (" + name + ") is a typographic quote; TOML strings are written between plain quotes, "
                                          "\"...\"");
    }
    if (toml::impl::is_non_ascii_horizontal_whitespace(c)) {
      return here(name + (c == U'\u00A0' ? " (a no-break space)" : "") +
                  " is a space TOML does not accept; use a plain space or a tab");
    }
    const Assignment a = assignment(line_);
    if (is_header(line_) || a.key.empty() || at_ < a.value_at) {
      return here(sockbroker::quoted(written) + " (" + name +
                  ") cannot be part of a key or a name: keys and socket names are written in ASCII letters, digits, "
                  "\"_\" and \"-\"");
    }
    return here(shown(a.key) + " = " + shown(a.value) + ": " + sockbroker::quoted(written) + " (" + name +
                ") is not ASCII; numbers, true and false are plain ASCII, and text goes between quotes");
  }

  [[nodiscard]] std::optional<SyntaxError> string_mistake() const {
    if (!context_.ends_with("string")) return std::nullopt;
    if (detail_.starts_with("unknown escape sequence")) {
      const std::size_t backslash = at_ > 0 && line_[at_ - 1] == '\\' ? at_ - 1 : at_;
      const std::string written(line_.substr(backslash, 1 + code_point_at(line_, backslash + 1).second));
      return at(backslash, written + " is not a TOML escape sequence; write a backslash as \\\\, or put the text "
                                     "between single quotes ('...'), where a backslash is plain");
    }
    const bool control = detail_.starts_with("unescaped control characters") ||
                         detail_.starts_with("control characters") || detail_.starts_with("unexpected control");
    if (control && !at_line_end()) {
      const char32_t c = code_point_at(line_, at_).first;
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04X", static_cast<unsigned>(c));
      return here("control character " + code_point_name(c) + " inside a string; write it as " + escape);
    }
    if (!control && !detail_.starts_with("encountered end-of-file")) return std::nullopt;
    return unclosed_string();
  }

  // toml++ notices a string was not closed at the line break (or the end of
  // the file) after it: the mistake is where the string opens.
  [[nodiscard]] SyntaxError unclosed_string() const {
    const Lexed lexed = lex(text_, line_start_ + at_);
    if (!lexed.open_string) return here("this string is not closed");
    const std::size_t open = *lexed.open_string;
    const auto before = text_.substr(0, open);
    const std::size_t start = before.rfind('\n') == std::string_view::npos ? 0 : before.rfind('\n') + 1;
    const std::string_view line = line_at(text_, start);
    const Assignment a = assignment(line.substr(0, open - start));
    const std::string what =
        a.key.empty() || !a.value.empty() ? "" : shown(a.key) + " = " + shown(trim(line.substr(open - start))) + ": ";
    const std::string delimiter(lexed.delimiter);
    std::string message = delimiter.size() == 3
                              ? what + "this multi-line string is never closed; end it with " + delimiter
                              : what + "the string is not closed; end it with " + delimiter + " on the same line";
    return SyntaxError{static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n') + 1),
                       column_of(line, open - start), std::move(message)};
  }

  // `socket_mode = 0660`: TOML has no C-style octal, and a mode is a string
  // in this policy (document.cpp says why).
  [[nodiscard]] SyntaxError leading_zero() const {
    std::size_t start = at_;
    while (start > 0 && std::string_view("0123456789_+-").find(line_[start - 1]) != std::string_view::npos) --start;
    const std::string_view number = line_.substr(start, at_ - start);
    std::string_view digits = number;
    std::string sign;
    if (digits.starts_with('-') || digits.starts_with('+')) {
      if (digits.front() == '-') sign = "-";
      digits.remove_prefix(1);
    }
    const Assignment a = assignment(line_);
    const bool whole_value = !a.key.empty() && a.value_at == start;
    const std::string what = whole_value ? shown(a.key) + " = " + std::string(number) : std::string(number);
    const std::string_view key = a.key.substr(a.key.rfind('.') == std::string_view::npos ? 0 : a.key.rfind('.') + 1);
    if (whole_value && key.ends_with("_mode")) {
      return at(start, what + ": TOML integers cannot start with 0; write the mode as a string, \"" +
                           std::string(digits) + "\"");
    }
    const auto significant = digits.find_first_not_of("0_");
    const std::string plain =
        significant == std::string_view::npos ? "0" : sign + std::string(digits.substr(significant));
    return at(start, what + ": TOML integers cannot start with 0; write " + plain);
  }

  // "cannot redefine existing TYPE 'PATH'", or "... 'PATH' as KIND" for a
  // table header: the mistake is the second definition, and the operator
  // needs the first.
  [[nodiscard]] SyntaxError redefined() const {
    const std::string_view rest = detail_.substr(std::string_view("cannot redefine existing ").size());
    const std::string_view type = rest.substr(0, rest.find(" '"));
    const auto as = rest.rfind("' as ");
    const std::string_view kind = as == std::string_view::npos ? std::string_view() : rest.substr(as + 5);
    const Lexed lexed = lex(text_, line_start_);
    if (!is_header(line_)) return key_set_twice(lexed, type);

    const std::string name = header_name(line_);
    const std::string header(written_header(line_));
    std::optional<std::size_t> first;
    bool first_is_array = false;
    for (std::size_t start : lexed.code_lines) {
      const std::string_view line = line_at(text_, start);
      if (is_header(line) && header_name(line) == name) {
        first = start + line.find('[');
        first_is_array = trim(line).starts_with("[[");
        break;
      }
    }
    const std::string where = first ? " at " + location(*first) : "";
    const std::size_t header_at = line_.find('[');
    if (kind.empty()) {
      return at(header_at, header + " is defined twice" + (first ? "; the first is" + where : " (once above)"));
    }
    if (kind == "table" && type == "array") {
      return at(header_at, header + " has single brackets, but " + name + " is an array of tables" +
                               (first_is_array ? " ([[" + name + "]]" + where + ")" : std::string()) + "; write [[" +
                               name + "]] for each of its tables");
    }
    if (kind == "array-of-tables" && first && !first_is_array) {
      return at(header_at, header + " has double brackets, but " + name + " is a table ([" + name + "]" + where +
                               "); write [[" + name + "]] for each of its tables");
    }
    return at(header_at, header + " cannot be " + (kind == "table" ? "a table" : "an array of tables") + ": " +
                             shown(name) + " is already " + with_article(type) + where);
  }

  // The first is in the same table: between the table's header and this line.
  [[nodiscard]] SyntaxError key_set_twice(const Lexed& lexed, std::string_view type) const {
    const Assignment a = assignment(line_);
    const std::string key = without_blanks(a.key);
    std::string table = "the top-level table";
    std::optional<std::size_t> first;
    for (auto it = lexed.code_lines.rbegin(); it != lexed.code_lines.rend(); ++it) {
      const std::string_view line = line_at(text_, *it);
      if (is_header(line)) {
        table = std::string(written_header(line));
        break;
      }
      const Assignment earlier = assignment(line);
      if (!earlier.key.empty() && without_blanks(earlier.key) == key) first = *it + earlier.key_at;
    }
    if (first) return at(a.key_at, shown(a.key) + " is set twice in " + table + "; the first is at " + location(*first));
    return at(a.key_at, shown(a.key) + " is already defined in " + table + " (as " + with_article(type) +
                            "); a key can be set only once");
  }

  [[nodiscard]] std::optional<SyntaxError> header_mistake() const {
    const std::string header(written_header(line_));
    const std::size_t header_at = line_.find('[');
    if (detail_.starts_with("tables with blank")) {
      return here("the table header " + header + " has no name; " + std::string(kHeaderForms));
    }
    if (detail_.starts_with("expected ']'") && at_line_end()) {
      const std::string closing = header.starts_with("[[") && !header.ends_with(']') ? "]]" : "]";
      return at(header_at, "the table header " + header + " is not closed; write " + header + closing);
    }
    if (detail_.starts_with("expected a comment or whitespace") && !at_line_end() && line_[at_] == ']' &&
        header.ends_with("]]") && !header.starts_with("[[")) {
      return here(header + " has one \"]\" too many; write " + header.substr(0, header.size() - 1));
    }
    if (detail_.starts_with("expected bare key") && !at_line_end() && line_[at_] == ']') {
      return here("the table header " + header + " has an empty name between dots; " + std::string(kHeaderForms));
    }
    if (context_ == "table header" || context_ == "key") {
      return here("unexpected " + found() + " in the table header " + header + "; " + std::string(kHeaderForms));
    }
    return std::nullopt;
  }

  [[nodiscard]] std::optional<SyntaxError> key_value_mistake() const {
    if (detail_.starts_with("expected '='")) {
      const std::string key = shown(trim(line_.substr(0, at_)));
      if (at_line_end()) return here(key + " has no value; write " + key + " = VALUE");
      if (line_[at_] == ':') {
        return here(key + ": TOML separates a key from its value with \"=\", not \":\"; write " + key + " = " +
                    shown(trim(line_.substr(at_ + 1))));
      }
      if (std::string_view("\"'[{0123456789").find(line_[at_]) != std::string_view::npos) {
        return here("\"=\" is missing between " + key + " and its value; write " + key + " = " +
                    shown(trim(line_.substr(at_))));
      }
      return here("expected \"=\" after the key " + key + ", not " + found() +
                  " (a key with blanks or other characters is written in quotes)");
    }
    if (detail_.starts_with("expected bare key") || detail_.starts_with("expected keys, tables")) {
      return here("unexpected " + found() + " where a line should start; a line is KEY = VALUE, a [table] header "
                                            "or a # comment");
    }
    if (context_ != "key-value pair") return std::nullopt;
    const Assignment a = assignment(line_);
    if (detail_.starts_with("expected value") || detail_.starts_with("encountered end-of-file")) {
      if (at_line_end()) return here(shown(a.key) + " has no value after \"=\"");
      return here("unexpected " + found() + " where the value of " + shown(a.key) + " should be");
    }
    if (detail_.starts_with("expected a comment or whitespace") && !at_line_end()) {
      if (line_[at_] == ',') {
        return here("unexpected \",\" after the value of " + shown(a.key) +
                    ": TOML has one KEY = VALUE per line, without commas");
      }
      return here("unexpected " + found() + " after the value of " + shown(a.key) + " (a comment starts with \"#\")");
    }
    return std::nullopt;
  }

  // A value toml++ could not read as any type: most often text without
  // quotes (`listen = 127.0.0.1:80` reads as the start of a time of day).
  [[nodiscard]] std::optional<SyntaxError> value_mistake() const {
    static constexpr std::string_view kValueContexts[] = {"value", "boolean",          "time",          "date",
                                                          "date-time", "date-time offset", "floating-point"};
    const bool value_context =
        context_.ends_with("integer") ||
        std::find(std::begin(kValueContexts), std::end(kValueContexts), context_) != std::end(kValueContexts);
    const Assignment a = assignment(line_);
    if (!value_context || a.key.empty()) return std::nullopt;
    const std::string what = shown(a.key) + " = " + shown(a.value);
    if (detail_.find("not representable") != std::string_view::npos) {
      return at(a.value_at, what + ": the number does not fit in 64 bits");
    }
    std::string lower(a.value);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "true" || lower == "false") {
      return at(a.value_at, what + ": booleans are written in lower case; write " + shown(a.key) + " = " + lower);
    }
    if (context_ == "boolean" || lower == "yes" || lower == "no" || lower == "on" || lower == "off") {
      return at(a.value_at, what + ": a boolean is true or false");
    }
    if (a.value.empty() || std::string_view("\"'[{").find(a.value.front()) != std::string_view::npos) {
      return here("unexpected " + found() + " where a value should be");
    }
    return at(a.value_at, what + ": text must be written in quotes; write " + shown(a.key) + " = \"" +
                              shown(a.value) + "\"");
  }

  std::string_view text_;
  const std::string& file_;
  std::string_view context_;  // "string", "table header", ...; empty when toml++ named none
  std::string_view detail_;   // toml++'s words after the context
  std::size_t line_number_ = 1;
  std::size_t line_start_ = 0;  // byte offset of the line in text_
  std::string_view line_;       // without its line break
  std::size_t at_ = 0;          // byte offset in line_ where toml++ stopped
};

class Loader {
 public:
  explicit Loader(const LoadOptions& options) : reporter_(options.strict), check_file_system_(options.check_file_system) {
    limits_.rmem_max = read_sysctl("/proc/sys/net/core/rmem_max");
    limits_.wmem_max = read_sysctl("/proc/sys/net/core/wmem_max");
  }

  // A path (file or directory) the operator named.
  void add_path(const std::string& path) {
    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (!ec && std::filesystem::is_directory(status)) {
      add_directory(path, /*must_have_files=*/true);
    } else {
      add_file(path);
    }
  }

  void add_directory(const std::string& path, bool must_have_files) {
    std::vector<std::string> names;
    std::error_code ec;
    std::filesystem::directory_iterator it(path, ec);
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      // The shell's *.toml: hidden files (editor swap files, ".#x.toml") are
      // not policy.
      if (name.size() <= 5 || name.front() == '.' || !name.ends_with(".toml")) continue;
      std::error_code type_ec;
      if (it->is_directory(type_ec)) continue;
      names.push_back(std::move(name));
    }
    if (ec) {
      file_error(path, "cannot read directory: " + ec.message());
      return;
    }
    // Byte order, not locale order: "10-a.toml" before "9-b.toml" on every host.
    std::sort(names.begin(), names.end());
    if (names.empty() && must_have_files) {
      file_error(path, "directory has no *.toml files");
      return;
    }
    for (const std::string& name : names) add_file((std::filesystem::path(path) / name).string());
  }

  void add_file(const std::string& path) {
    auto text = read_bounded(path);
    if (!text) {
      file_error(path, text.error().message);
      return;
    }
    add_text(*text, path);
  }

  void add_text(std::string_view text, const std::string& file) {
    if (text.size() > kMaxPolicyBytes) {
      file_error(file, "file is larger than " + std::to_string(kMaxPolicyBytes) + " bytes");
      return;
    }
    order_.push_back(file);
    files_.push_back(file);
    toml::table root;
    try {
      root = toml::parse(text, std::string_view(file));
    } catch (const toml::parse_error& e) {
      SyntaxError explained = SyntaxExplainer(text, file, e).explain();
      reporter_.error(SourcePos{file, static_cast<int>(explained.line), static_cast<int>(explained.column)},
                      std::move(explained.message));
      return;
    }
    detail::ParsedDocument document = detail::read_document(root, file, limits_, reporter_);
    merge_broker(document);
    // One move of the whole range: pushing one at a time regrows the vector
    // while the document's copy and the TOML tree are still alive, which was
    // the peak of a large policy's memory.
    sockets_.insert(sockets_.end(), std::make_move_iterator(document.sockets.begin()),
                    std::make_move_iterator(document.sockets.end()));
  }

  LoadResult finish() {
    check_names_and_conflicts();
    LoadResult result;
    bool ok = !reporter_.has_errors();
    result.diagnostics = reporter_.take_sorted(order_);
    if (!ok) return result;
    Policy policy;
    policy.broker = broker_;
    policy.files = std::move(files_);
    policy.sockets.reserve(sockets_.size());
    for (auto& parsed : sockets_) policy.sockets.push_back(std::move(parsed.spec));
    detail::stable_sort_records(policy.sockets, [](const SocketSpec& a, const SocketSpec& b) { return a.name < b.name; });
    result.policy = std::move(policy);
    return result;
  }

 private:
  void file_error(const std::string& path, std::string message) {
    order_.push_back(path);
    reporter_.error(SourcePos{path, 0, 0}, std::move(message));
  }

  void merge_broker(const detail::ParsedDocument& document) {
    for (const auto& key : document.broker_keys) {
      auto [it, inserted] = broker_keys_.emplace(key.key, key.where);
      if (!inserted) {
        // Two drop-ins disagreeing silently by load order is how a limit ends
        // up different from what either author wrote.
        reporter_.error(key.where, key.key + " is already set at " + detail::to_string(it->second));
        continue;
      }
      apply_broker_key(key.key, document.broker, broker_);
    }
  }

  // Sockets are in load order, so "earlier" is the first file, first line.
  void check_names_and_conflicts() {
    std::unordered_map<std::string, std::size_t> by_name;
    std::unordered_map<std::string, std::vector<std::size_t>> by_key;
    for (std::size_t i = 0; i < sockets_.size(); ++i) {
      const detail::ParsedSocket& current = sockets_[i];
      auto [named, inserted] = by_name.emplace(current.spec.name, i);
      if (!inserted) {
        reporter_.error(current.spec.where, "socket " + sockbroker::quoted(current.spec.name) + " is already defined at " +
                                                detail::to_string(sockets_[named->second].spec.where));
        continue;  // one message per mistake: its conflicts would repeat this one
      }
      if (check_file_system_) check_netns_directories(current);
      if (!current.usable) continue;
      if (check_file_system_ && current.spec.listen.kind == Address::Kind::unix_path) check_directories(current);
      auto& group = by_key[detail::conflict_key(current.spec)];
      // Quadratic only among sockets sharing a port and transport (or a
      // path): a handful in any real policy.
      for (std::size_t j : group) {
        const detail::ParsedSocket& other = sockets_[j];
        if (!detail::bindings_conflict(other.spec, current.spec)) continue;
        std::string message = "listen " + sockbroker::quoted(current.spec.listen.text) + " conflicts with socket " +
                              sockbroker::quoted(other.spec.name) + " (" + sockbroker::quoted(other.spec.listen.text) + " at " +
                              detail::to_string(other.listen_pos) + ")";
        if (!current.spec.listen.is_unix()) message += "; sockets can share a port only if both set reuse_port = true";
        reporter_.error(current.listen_pos, std::move(message));
        break;
      }
      group.push_back(i);
    }
  }

  void check_directories(const detail::ParsedSocket& socket) {
    PathVerdict verdict = check_socket_directories(socket.spec.listen.text);
    if (verdict.kind == PathVerdict::Kind::untrusted) reporter_.error(socket.listen_pos, std::move(verdict.message));
    if (verdict.kind == PathVerdict::Kind::unknown) reporter_.warning(socket.listen_pos, std::move(verdict.message));
  }

  // The broker searches a netns_path directory only if it is reached through
  // directories only root can change, following no link (broker/netns_binder.cpp).
  void check_netns_directories(const detail::ParsedSocket& socket) {
    const auto& paths = socket.spec.netns_allow.paths;
    for (std::size_t i = 0; i < paths.size() && i < socket.netns_path_pos.size(); ++i) {
      PathVerdict verdict = check_directories_on_the_way(
          paths[i], "the broker searches netns_path only in directories only root can change");
      if (verdict.kind == PathVerdict::Kind::untrusted) reporter_.error(socket.netns_path_pos[i], std::move(verdict.message));
      if (verdict.kind == PathVerdict::Kind::unknown) reporter_.warning(socket.netns_path_pos[i], std::move(verdict.message));
    }
  }

  detail::Reporter reporter_;
  bool check_file_system_ = true;
  detail::HostLimits limits_;
  std::vector<std::string> order_;  // every path a diagnostic may name, in load order
  std::vector<std::string> files_;  // the files actually read
  BrokerSettings broker_;
  std::map<std::string, SourcePos> broker_keys_;
  std::vector<detail::ParsedSocket> sockets_;
};

}  // namespace

LoadResult load_policy(const std::vector<std::string>& paths, const LoadOptions& options) {
  detail::AccountCache accounts;  // one lookup per account name per load
  Loader loader(options);
  if (paths.empty()) {
    loader.add_file(kDefaultPolicyFile);
    std::error_code ec;
    // The drop-in directory is optional, and may be empty.
    if (std::filesystem::is_directory(kDefaultPolicyDir, ec)) loader.add_directory(kDefaultPolicyDir, false);
  } else {
    for (const std::string& path : paths) loader.add_path(path);
  }
  return loader.finish();
}

LoadResult load_policy_text(std::string_view text, std::string_view file_name, const LoadOptions& options) {
  detail::AccountCache accounts;  // one lookup per account name per load
  Loader loader(options);
  loader.add_text(text, std::string(file_name));
  return loader.finish();
}

}  // namespace sockbroker::policy
