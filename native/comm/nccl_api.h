// The few NCCL C API types and functions parallm calls, declared here (no NCCL headers are needed to
// build), and a loader that finds them at run time with dlopen: a machine without NCCL still loads the
// addon and serves everything else. Values match NCCL's public nccl.h (src/nccl.h.in, NCCL 2.x); the
// C ABI is stable across 2.x releases.
#pragma once
#include <cstddef>
#include <string>

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace parallm {
namespace nccl {

typedef struct ncclComm* ncclComm_t;
constexpr size_t kUniqueIdBytes = 128;
typedef struct {
  char internal[kUniqueIdBytes];
} ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclTimeout = 8,
} ncclResult_t;

typedef enum { ncclInt32 = 2, ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclAvg = 4 } ncclRedOp_t;

// Function pointers, filled by dlsym.
struct Api {
  int version = 0;  // ncclGetVersion: 22803 for 2.28.3
  ncclResult_t (*GetVersion)(int*);
  ncclResult_t (*GetUniqueId)(ncclUniqueId*);
  ncclResult_t (*CommInitRank)(ncclComm_t*, int nranks, ncclUniqueId id, int rank);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, CUstream_st*);
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int root, ncclComm_t, CUstream_st*);
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, CUstream_st*);
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t recvcount, ncclDataType_t, ncclRedOp_t, ncclComm_t, CUstream_st*);
  ncclResult_t (*Send)(const void*, size_t, ncclDataType_t, int peer, ncclComm_t, CUstream_st*);
  ncclResult_t (*Recv)(void*, size_t, ncclDataType_t, int peer, ncclComm_t, CUstream_st*);
  ncclResult_t (*GroupStart)();
  ncclResult_t (*GroupEnd)();
  const char* (*GetErrorString)(ncclResult_t);
};

// The library: dlopen(PARALLM_NCCL_LIBRARY or "libnccl.so.2") once per process. Throws parallm::Error
// naming the library and symbol looked for and dlerror() when it is missing.
const Api& api();
// {true, version} or {false, the reason}, without throwing.
bool available(int* version, std::string* error);

}  // namespace nccl
}  // namespace parallm
