// Rows of text in aligned columns: the human output of list, status, audit
// and doctor.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sockbroker::cli {

using TableRow = std::vector<std::string>;

// Each column as wide as its widest cell, then two blanks; the last cell of a
// row is not padded and no line ends in blanks, so diff and grep see none.
// Every line starts with indent. A row may have fewer cells than another.
[[nodiscard]] std::string format_table(const std::vector<TableRow>& rows, std::string_view indent = {});

}  // namespace sockbroker::cli
