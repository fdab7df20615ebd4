// Emulated forms of the prefill attention's ping-pong turns and predicated mbarrier arrival
// (attention_prefill_sm90.cuh's pp_wait, pp_pass, pp_wait_if, pp_pass_if, mbar_arrive_if), spliced in by run.sh
// after its kPpBar. A named barrier of 256: bar.sync counts its thread and waits for the count to complete the
// phase; bar.arrive counts and goes on (the other warpgroup's threads arrive, this one's wait).
// (Spliced inside namespace parallm::cuda::attn_detail: <condition_variable> and <mutex> come first, by attn90_emu.cc.)
#pragma once

struct EmuNamedBar {
  std::mutex mu;
  std::condition_variable cv;
  int count = 0;
  unsigned gen = 0;
  void arrive(bool wait, int n) {
    std::unique_lock<std::mutex> g(mu);
    const unsigned my = gen;
    if (++count == n) {
      count = 0, ++gen;
      cv.notify_all();
      return;
    }
    if (wait) cv.wait(g, [&] { return gen != my; });
  }
};
inline EmuNamedBar emu_named_bar[16];

inline void pp_wait(int cw) { emu_named_bar[kPpBar + cw].arrive(true, 256); }
inline void pp_pass(int cw) { emu_named_bar[kPpBar + 1 - cw].arrive(false, 256); }
inline void pp_wait_if(int cw, bool p) { if (p) pp_wait(cw); }
inline void pp_pass_if(int cw, bool p) { if (p) pp_pass(cw); }
inline void mbar_arrive_if(uint32_t bar, bool p) { if (p) ::parallm::cuda::sm90::mbar_arrive(bar); }
