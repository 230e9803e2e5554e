#include "unix_path_safety.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace sockbroker::policy {

std::optional<std::string> untrusted_directory(const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return std::string("is a symbolic link");
  if (!S_ISDIR(st.st_mode)) return std::string("is not a directory");
  if (st.st_uid != 0) return "is owned by uid " + std::to_string(st.st_uid) + ", not root";
  if ((st.st_mode & S_ISVTX) != 0) return std::nullopt;
  if ((st.st_mode & S_IWOTH) != 0) return std::string("is writable by everyone and not sticky");
  if ((st.st_mode & S_IWGRP) != 0) return "is writable by its group (gid " + std::to_string(st.st_gid) + ") and not sticky";
  return std::nullopt;
}

PathVerdict check_socket_directories(std::string_view socket_path) {
  return check_directories_on_the_way(socket_path,
                                      "a user who can change it could redirect the broker's root operations there; use "
                                      "a directory only root can write (the broker creates missing ones root-owned 0755)");
}

PathVerdict check_directories_on_the_way(std::string_view socket_path, std::string_view advice) {
  const std::size_t last = socket_path.rfind('/');
  if (socket_path.empty() || socket_path[0] != '/' || last == std::string_view::npos) return {};
  std::string directory = "/";
  std::string_view rest = socket_path.substr(1, last == 0 ? 0 : last - 1);
  for (;;) {
    struct stat st {};
    if (::lstat(directory.c_str(), &st) != 0) {
      const int err = errno;
      if (err == ENOENT) return {};  // for a socket, the broker makes the rest: root-owned 0755
      return {PathVerdict::Kind::unknown,
              "cannot inspect \"" + directory + "\" (" + std::strerror(err) + "); sockbrokerd checks again when it binds"};
    }
    if (auto why = untrusted_directory(st)) {
      std::string message = "\"" + directory + "\", on the way to \"" + std::string(socket_path) + "\", " + *why;
      message += S_ISLNK(st.st_mode) ? std::string(": write the path without links (the broker follows none)")
                                     : ": " + std::string(advice);
      return {PathVerdict::Kind::untrusted, std::move(message)};
    }
    if (rest.empty()) return {};
    const std::size_t slash = rest.find('/');
    if (directory.size() > 1) directory += '/';
    directory += rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
}

}  // namespace sockbroker::policy
