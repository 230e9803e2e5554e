#include "table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace sockbroker::cli {
namespace {

// In code points, as fmt measures what it pads: an address or a process name
// may hold UTF-8.
std::size_t width_of(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace

std::string format_table(const std::vector<TableRow>& rows, std::string_view indent) {
  std::vector<std::size_t> widths;
  for (const TableRow& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], width_of(row[i]));
  }
  std::string out;
  for (const TableRow& row : rows) {
    std::string line(indent);
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i + 1 < row.size()) {
        fmt::format_to(std::back_inserter(line), "{:<{}}", row[i], widths[i] + 2);
      } else {
        line += row[i];
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace sockbroker::cli
