// An out-of-tree C++ program built against an *installed* libsockbroker through
// its CMake package (find_package(sockbroker)). It asks a real broker for one
// socket and exits 0 only if it received a listening descriptor.
//
// Usage: cxx_consumer CONTROL_PATH SOCKET_NAME
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <sockbroker/client.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " CONTROL_PATH SOCKET_NAME\n";
    return 64;
  }
  auto client = sockbroker::Client::connect(argv[1]);
  if (!client) {
    std::cerr << "cxx_consumer: " << client.error().message << '\n';
    return 1;
  }
  auto grant = client->acquire(argv[2]);
  if (!grant) {
    std::cerr << "cxx_consumer: socket \"" << argv[2] << "\": " << grant.error().message << '\n';
    return 1;
  }
  int listening = 0;
  socklen_t length = sizeof listening;
  if (::getsockopt(grant->fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) {
    std::cerr << "cxx_consumer: getsockopt(SO_ACCEPTCONN): " << std::strerror(errno) << '\n';
    return 1;
  }
  if (listening == 0) {
    std::cerr << "cxx_consumer: socket \"" << grant->name << "\" arrived but is not listening\n";
    return 1;
  }
  std::cout << "cxx_consumer: got listening socket \"" << grant->name << "\" (" << grant->type << ", "
            << grant->address << ") as fd " << grant->fd.get() << '\n';
  return 0;
}
