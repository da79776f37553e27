// The emulated thread block of tests/simt.hpp: threads as fibers (ucontext), a scheduler that runs each to its
// next collective and releases the warps and blocks whose threads have all arrived.
#include "tests/simt.hpp"

#include <ucontext.h>

#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "nn/matmul.hpp"

namespace lsb::simt {

Dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

constexpr std::size_t kStackBytes = 256 * 1024;

struct Copy {
  unsigned char* dst;
  const unsigned char* src;
};

// What a lane hands to a warp collective.
struct Slot {
  std::uint32_t u[6];
  float f;
  const void* p;
};

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  bool done = false;
  const char* waiting = nullptr;  // the collective this thread waits at
  bool block_scope = false;       // __syncthreads (the block), else a warp collective (its 32 lanes)
  std::uint64_t phase = 0;        // barriers passed
  std::vector<Copy> open;         // cp.async not yet committed
  std::deque<std::vector<Copy>> groups;
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<unsigned char> shared;
  std::vector<Slot> slots[2];  // per thread, by the parity of the phase
  ucontext_t scheduler;
  unsigned current = 0;
  std::string error;
  const std::function<void()>* body = nullptr;
  std::map<const void*, std::vector<unsigned char>> statics;  // __shared__ arrays, by declaration
};

Block* running = nullptr;
std::vector<std::pair<const unsigned char*, std::size_t>> globals;

struct Abort {};  // unwinds a thread after a failed check

Fiber& me() { return running->fibers[running->current]; }

void fiber_main() {
  try {
    (*running->body)();
  } catch (const Abort&) {
  } catch (const std::exception& e) {
    if (running->error.empty()) running->error = e.what();
  }
  me().done = true;
  swapcontext(&me().context, &running->scheduler);  // never resumed
}

// A thread about to run the body from its start (its own function: getcontext returns twice, which
// the caller's locals must not live across).
[[gnu::noinline]] void start(Fiber& f) {
  f.done = false;
  f.waiting = nullptr;
  f.block_scope = false;
  f.phase = 0;
  f.open.clear();
  f.groups.clear();
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack.get();
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, fiber_main, 0);
}

// Waits at a barrier of kind `what`: of the block, or of this thread's warp.
void arrive(const char* what, bool block_scope) {
  Fiber& f = me();
  f.waiting = what;
  f.block_scope = block_scope;
  ++f.phase;
  swapcontext(&f.context, &running->scheduler);
}

// Deposits this lane's part of a warp collective, waits for its warp, and returns the warp's 32 slots.
template <typename Fill>
const Slot* exchange(const char* what, Fill fill) {
  const int parity = static_cast<int>(me().phase % 2);
  fill(running->slots[parity][running->current]);
  arrive(what, false);
  return &running->slots[parity][running->current / 32 * 32];
}

std::string block_name() { return "block (" + std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ")"; }

void check_shared(const void* p, std::size_t bytes, const char* what) {
  const auto* c = static_cast<const unsigned char*>(p);
  const unsigned char* base = running->shared.data();
  if (c < base || c + bytes > base + running->shared.size())
    fail(std::string(what) + ": shared address " + std::to_string(c - base) + " outside the block's " +
         std::to_string(running->shared.size()) + " bytes");
  if (reinterpret_cast<std::uintptr_t>(c) % 16 != 0)
    fail(std::string(what) + ": shared address " + std::to_string(c - base) + " not 16-byte aligned");
}

void ldsm(std::uint32_t (&r)[4], const std::uint16_t* p, bool trans) {
  check_shared(p, 16, trans ? "ldmatrix.trans" : "ldmatrix");
  const Slot* warp = exchange(trans ? "ldmatrix.trans" : "ldmatrix", [&](Slot& s) { s.p = p; });
  const int lane = static_cast<int>(running->current % 32), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    std::uint16_t e0, e1;
    if (!trans) {  // row g of matrix i, columns 2t, 2t + 1
      const auto* row = static_cast<const std::uint16_t*>(warp[8 * i + g].p);
      e0 = row[2 * t];
      e1 = row[2 * t + 1];
    } else {  // rows 2t, 2t + 1 of matrix i, column g
      e0 = static_cast<const std::uint16_t*>(warp[8 * i + 2 * t].p)[g];
      e1 = static_cast<const std::uint16_t*>(warp[8 * i + 2 * t + 1].p)[g];
    }
    r[i] = std::uint32_t(e0) | std::uint32_t(e1) << 16;
  }
}

}  // namespace

void register_global(const void* p, std::size_t bytes) {
  globals.emplace_back(static_cast<const unsigned char*>(p), bytes);
}
void clear_globals() { globals.clear(); }

unsigned char* shared_memory() { return running->shared.data(); }

void* block_static(const void* declaration, std::size_t bytes) {
  auto& storage = running->statics[declaration];
  if (storage.empty()) storage.assign(bytes, 0xff);  // uninitialised: NaN as fp32
  return storage.data();
}

void fail(const std::string& what) {
  if (running->error.empty())
    running->error = block_name() + " thread " + std::to_string(running->current) + ": " + what;
  throw Abort{};
}

namespace {

// Releases what can be released: a warp whose live lanes all wait at the same warp collective (every
// lane must be live: a collective with exited lanes is an error), and the block once every live thread
// waits at __syncthreads. Returns whether anything was released.
bool release(Block& block, unsigned threads) {
  bool released = false;
  for (unsigned w = 0; w < threads / 32; ++w) {
    Fiber* lanes = &block.fibers[32 * w];
    int at_warp = -1;  // a lane waiting at a warp collective
    bool all = true;
    for (int l = 0; l < 32; ++l) {
      const Fiber& f = lanes[l];
      const bool warp_wait = !f.done && f.waiting && !f.block_scope;
      all &= warp_wait;
      if (!warp_wait) continue;
      if (at_warp < 0) at_warp = l;
      if (std::strcmp(f.waiting, lanes[at_warp].waiting) != 0)
        throw std::runtime_error("simt: " + block_name() + ": lane " + std::to_string(32 * w + at_warp) + " waits at " +
                                 lanes[at_warp].waiting + ", lane " + std::to_string(32 * w + l) + " at " + f.waiting);
    }
    if (at_warp >= 0)
      for (int l = 0; l < 32; ++l)
        if (lanes[l].done)
          throw std::runtime_error("simt: " + block_name() + ": thread " + std::to_string(32 * w + at_warp) +
                                   " waits at " + lanes[at_warp].waiting + " with lane " + std::to_string(l) +
                                   " of its warp exited");
    if (all) {
      for (int l = 0; l < 32; ++l) lanes[l].waiting = nullptr;
      released = true;
    }
  }
  if (released) return true;
  // __syncthreads: every thread that has not exited waits there.
  bool any = false;
  for (const Fiber& f : block.fibers) {
    if (f.done) continue;
    if (!f.waiting || !f.block_scope) return false;
    any = true;
  }
  for (Fiber& f : block.fibers) f.waiting = nullptr;
  return any;
}

// Runs one block to its end: every thread that is not waiting runs to its next barrier or its end, then
// the barriers that can be are released; nothing to release with threads still waiting is a deadlock.
void run_block(Block& block, unsigned threads) {
  for (;;) {
    for (unsigned t = 0; t < threads && block.error.empty(); ++t) {
      Fiber& f = block.fibers[t];
      if (f.done || f.waiting) continue;
      block.current = t;
      threadIdx = {t, 0, 0};
      swapcontext(&block.scheduler, &f.context);
    }
    if (!block.error.empty()) throw std::runtime_error("simt: " + block.error);
    bool all_done = true;
    for (const Fiber& f : block.fibers) all_done &= f.done;
    if (all_done) return;
    if (!release(block, threads)) {
      std::string waits;
      for (unsigned t = 0; t < threads; t += 32)
        waits += " thread " + std::to_string(t) + ": " +
                 (block.fibers[t].done      ? "ended"
                  : block.fibers[t].waiting ? block.fibers[t].waiting
                                            : "running");
      throw std::runtime_error("simt: " + block_name() + ": deadlock (" + waits + " )");
    }
  }
}

}  // namespace

void launch(unsigned grid_x, unsigned grid_y, unsigned threads, std::size_t shared_bytes,
            const std::function<void()>& body) {
  if (threads == 0 || threads % 32 != 0) throw std::runtime_error("simt: threads must be a multiple of 32");
  Block block;
  block.body = &body;
  block.fibers.resize(threads);
  for (auto& f : block.fibers) f.stack = std::make_unique<char[]>(kStackBytes);
  block.slots[0].resize(threads);
  block.slots[1].resize(threads);
  running = &block;
  gridDim = {grid_x, grid_y, 1};
  blockDim = {threads, 1, 1};
  struct Reset {
    ~Reset() { running = nullptr; }
  } reset;
  for (unsigned by = 0; by < grid_y; ++by)
    for (unsigned bx = 0; bx < grid_x; ++bx) {
      blockIdx = {bx, by, 0};
      block.shared.assign(shared_bytes, 0xff);  // fresh shared memory reads as NaN
      for (auto& f : block.fibers) start(f);
      block.statics.clear();
      run_block(block, threads);
    }
}

void block_sync() { arrive("__syncthreads", true); }
void warp_sync() { arrive("__syncwarp", false); }

float lane_xor(float v, int lane_mask) {
  const Slot* warp = exchange("shfl.xor", [&](Slot& s) { s.f = v; });
  return warp[(running->current % 32) ^ static_cast<unsigned>(lane_mask)].f;
}

float lane_shfl(float v, int src_lane) {
  const Slot* warp = exchange("shfl.idx", [&](Slot& s) { s.f = v; });
  return warp[src_lane & 31].f;
}

void cp_async16(void* shared_dst, const void* global_src) {
  check_shared(shared_dst, 16, "cp.async destination");
  const auto* src = static_cast<const unsigned char*>(global_src);
  bool inside = false;
  for (const auto& [p, bytes] : globals) inside |= src >= p && src + 16 <= p + bytes;
  if (!inside) fail("cp.async source outside every registered global buffer");
  if (reinterpret_cast<std::uintptr_t>(src) % 16 != 0) fail("cp.async source not 16-byte aligned");
  me().open.push_back({static_cast<unsigned char*>(shared_dst), src});
}

void cp_async_commit() {
  Fiber& f = me();
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}

void cp_async_wait_group(int n) {
  Fiber& f = me();
  while (f.groups.size() > static_cast<std::size_t>(n)) {
    for (const Copy& c : f.groups.front()) std::memcpy(c.dst, c.src, 16);
    f.groups.pop_front();
  }
}

void ldsm_x4(std::uint32_t (&r)[4], const std::uint16_t* p) { ldsm(r, p, false); }
void ldsm_x4_trans(std::uint32_t (&r)[4], const std::uint16_t* p) { ldsm(r, p, true); }

void mma16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  const Slot* warp = exchange("mma", [&](Slot& s) {
    for (int i = 0; i < 4; ++i) s.u[i] = a[i];
    s.u[4] = b0;
    s.u[5] = b1;
  });
  // Fragments (PTX ISA, mma.m16n8k16 with .bf16), lane = 4 g + t: a registers (g, 2t..), (g + 8, 2t..),
  // (g, 2t + 8..), (g + 8, 2t + 8..); b registers (k = 2t.., n = g), (k = 2t + 8.., n = g).
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    const int row[4] = {g, g + 8, g, g + 8}, col[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int r = 0; r < 4; ++r) {
      A[row[r]][col[r]] = bf16_value(static_cast<std::uint16_t>(warp[lane].u[r] & 0xffff));
      A[row[r]][col[r] + 1] = bf16_value(static_cast<std::uint16_t>(warp[lane].u[r] >> 16));
    }
    for (int r = 0; r < 2; ++r) {
      B[2 * t + 8 * r][g] = bf16_value(static_cast<std::uint16_t>(warp[lane].u[4 + r] & 0xffff));
      B[2 * t + 8 * r + 1][g] = bf16_value(static_cast<std::uint16_t>(warp[lane].u[4 + r] >> 16));
    }
  }
  // c floats of this lane: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
  const int lane = static_cast<int>(running->current % 32), g = lane / 4, t = lane % 4;
  const int row[4] = {g, g, g + 8, g + 8}, col[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int i = 0; i < 4; ++i) {
    double acc = d[i];
    for (int k = 0; k < 16; ++k) acc += A[row[i]][k] * B[k][col[i]];
    d[i] = static_cast<float>(acc);
  }
}

std::uint16_t bf16_bits(float x) {
  const float r = round_to_bf16(x);
  std::uint32_t u;
  std::memcpy(&u, &r, 4);
  return static_cast<std::uint16_t>(u >> 16);
}
float bf16_value(std::uint16_t bits) {
  const std::uint32_t u = std::uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint32_t pack_bf16(float lo, float hi) {
  return std::uint32_t(bf16_bits(lo)) | std::uint32_t(bf16_bits(hi)) << 16;
}

}  // namespace lsb::simt
