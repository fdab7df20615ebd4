// Device identity: cpu:N or cuda:N.
#pragma once
#include <string>

namespace parallm {

enum class DeviceKind : int { CPU = 0, CUDA = 1 };

struct DeviceId {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;
  bool operator==(const DeviceId& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const DeviceId& o) const { return !(*this == o); }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  std::string str() const { return (kind == DeviceKind::CUDA ? "cuda:" : "cpu:") + std::to_string(index); }
};

}  // namespace parallm
