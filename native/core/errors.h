// One exception type for every failure below the N-API boundary. The addon turns it into a JS Error,
// adding the device; kernels and runtimes say which op failed, with the sizes involved.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace parallm {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Build a message from any streamable pieces: fail("matmul: M=", M, " is negative").
template <typename... Args>
[[noreturn]] inline void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}

#define PARALLM_CHECK(cond, ...)                 \
  do {                                           \
    if (!(cond)) ::parallm::fail(__VA_ARGS__);   \
  } while (0)

}  // namespace parallm
