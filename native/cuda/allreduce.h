// The peer all-reduce (allreduce.cu): the host's view of the buffers and flags that the ranks of one
// process share when their GPUs reach each other (NVLink or PCIe peer access). native/comm/communicator.cc
// sets them up beside an NCCL communicator and sends small messages this way (decode's tensor-parallel
// all-reduces are a few KB, where NCCL's latency is the cost).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "../core/dtype.h"

namespace parallm::cuda {

constexpr int kPeerMaxRanks = 8;
// A fixed grid: every call uses every block, so each block's call counter (and with it the parity of
// the double-buffered receive slots) is the same on every rank and every call, whatever the size.
constexpr int kPeerBlocks = 32;
constexpr int kPeerThreads = 512;
// The largest message sent this way; larger ones go to NCCL (its ring wins once bandwidth matters).
constexpr size_t kPeerMaxBytes = size_t(1) << 20;

// In each rank's device memory, written by its peers (start, mid) and by itself (counter).
struct PeerFlags {
  uint32_t start[kPeerBlocks][kPeerMaxRanks];  // peer r has pushed call `value`'s data for this block
  uint32_t mid[kPeerBlocks][kPeerMaxRanks];    // two-shot: peer r has pushed its reduced part
  uint32_t counter[kPeerBlocks];               // calls this block has made (the next call's value - 1)
};

// In mapped host memory, one per rank: the host stops a spinning kernel (abort) and learns why a call
// failed (error: 1 timed out waiting for `peer`, 2 stopped by abort()).
struct PeerControl {
  volatile int abort;
  volatile int error;
  volatile int peer;
};

// What one rank's kernel is given: every rank's receive area and flags (device pointers, peer-mapped),
// and this rank's control block.
struct PeerRanks {
  // Rank r's receive area: [2 protocols: plain, LL][2 parities][world senders][kPeerMaxBytes] (LL lines
  // never share memory with plain data, whose words could pass for a flag).
  char* slots[kPeerMaxRanks];
  PeerFlags* flags[kPeerMaxRanks];
  PeerControl* control;  // the device's address of this rank's mapped control block
  int rank, world;
  unsigned long long timeout_ns;  // 0: wait for peers forever (the abort flag still ends it)
};

// Bytes of one rank's receive area.
inline size_t peer_slot_bytes(int world) { return size_t(4) * size_t(world) * kPeerMaxBytes; }

// How the bytes travel:
//   LL: each 4 bytes go out beside the call's flag in one 8-byte store (NCCL's LL protocol), so a reader
//       knows a word has come by its flag alone: no fence, no barrier, one crossing of the link. Twice
//       the bytes on the wire, so for small messages (at most kPeerMaxBytes / 2).
//   OneShot: each rank pushes all of buf to every peer, one release/acquire exchange, then sums locally.
//   TwoShot: each rank reduces 1/world of buf and pushes that part to every peer (two exchanges,
//       2 (world - 1) / world of the bytes a rank sends instead of world - 1 times them).
enum class PeerAlgo { LL, OneShot, TwoShot };
const char* peer_algo_name(PeerAlgo a);

// In place over buf (n elements of f32, bf16 or f16, 16-byte aligned, n * size <= kPeerMaxBytes, LL and
// TwoShot: whole 16-byte packs): every rank's buf becomes the sum (avg: the mean) over ranks, added in
// f32 in rank order, so every rank gets the same bits. With `residual` (LL and OneShot; same size and
// type): residual += that result instead (rounded to the type first, then added, as an add kernel after
// the all-reduce would), and buf is left as it was. Queued on `stream`; a graph records it like a kernel.
void peer_all_reduce(const PeerRanks& r, void* buf, void* residual, int64_t n, DType dt, bool avg, PeerAlgo algo,
                     cudaStream_t stream);

// LL, then RMSNorm (decode's tensor-parallel layers): x += the sum over ranks of buf (rows x cols, f32 or
// bf16, rounded then added as peer_all_reduce's residual form), then h = rmsnorm(x, nw, eps) with the bits
// norm.cu's rmsnorm writes. rows * cols * size <= kPeerMaxBytes / 2, rows of whole 16-byte packs, every
// buffer 16-byte aligned. buf is left as it was.
void peer_all_reduce_norm(const PeerRanks& r, const void* buf, void* x, const void* nw, void* h, int64_t rows,
                          int64_t cols, float eps, DType dt, cudaStream_t stream);

}  // namespace parallm::cuda
