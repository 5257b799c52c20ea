// loop-poll.cc: adaptive busy polling of the calling thread's event loop ("hybrid polling").
//
//   loopPollSet(maxSpinNs): void   0 turns it off; otherwise spin at most this long per idle period
//   loopPollStats(): { maxSpinNs, windowNs, spins, hits, timeouts, spinNs }
//
// Why: at queue depth 1 a client sends its next request a few tens of microseconds after our
// reply. A thread asleep in epoll_wait pays a wake-up for it; on a virtual machine an idle vCPU
// has halted, and waking it costs the host an exit and an interrupt. Measured on the project's
// 2-vCPU VM that was 30-40 us per request, as much as the rest of the request's work.
//
// Measured with the Node floor of `bench nbd` (QD1 4 KiB write + flush, one connection): 0.75 ×
// nbdkit without the spin, 0.90 × with it. Spinning without sched_yield was slower (0.56 against
// 0.69 × nbdkit for Cairn): fio's thread waits for the CPU the spinner holds.
//
// What: just before libuv blocks in epoll_wait (a prepare handle), the thread polls the loop's
// epoll descriptor with a zero timeout, yielding the CPU between polls, for at most a window.
// The first ready event ends the spin and libuv's own epoll_wait then returns at once. Which
// events are delivered, and in which order, does not change: the spin only decides whether the
// thread is already on a CPU when they arrive. Timers are not epoll events, so the window is cut
// to the loop's own poll timeout and a due timer is never delayed; when the loop will not block
// (pending callbacks, immediates, closing handles) there is no spin at all.
//
// The window adapts like the kernel's haltpoll cpuidle governor. The idle period is measured
// from the start of the spin to the end of the poll phase (a check handle):
//   - longer than the window but within maxSpinNs: a longer spin would have caught it, so the
//     window grows (to kGrowStartNs, then doubling, at most maxSpinNs);
//   - longer than maxSpinNs: the window halves, and below kGrowStartNs it is 0.
// An idle daemon therefore stops spinning after a few wake-ups, and a busy one spins only as
// long as its gaps between events are short.
//
// State is per thread (one Node environment per thread: the main thread or a worker), so each
// event loop has its own handles and statistics. The handles are unreferenced: they never keep
// a loop alive.
#include "loop-poll.h"

#include <poll.h>
#include <sched.h>
#include <time.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace cairn {

namespace {

// The first non-zero window; the kernel's haltpoll governor starts at 50 us too.
constexpr uint64_t kGrowStartNs = 50000;
// The longest window a caller may configure: 10 ms of spinning per idle period is already far
// past any wake-up cost it could save.
constexpr uint64_t kMaxSpinNsMax = 10000000;

struct LoopPoll {
  uv_prepare_t prepare;
  uv_check_t check;
  uv_loop_t* loop = nullptr;
  int backend_fd = -1;
  uint64_t max_ns = 0;
  uint64_t window_ns = 0;
  uint64_t idle_start_ns = 0;  // 0: no idle period is being measured
  int open_handles = 0;
  // Statistics since the state was created.
  uint64_t spins = 0;     // idle periods that began with a spin
  uint64_t hits = 0;      // spins ended by a ready event
  uint64_t timeouts = 0;  // spins that ran out their window
  uint64_t spin_ns = 0;   // time spent spinning
};

thread_local LoopPoll* current = nullptr;

uint64_t NowNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
}

bool EventReady(int fd) {
  pollfd entry{fd, POLLIN, 0};
  int result;
  do {
    result = poll(&entry, 1, 0);
  } while (result < 0 && errno == EINTR);
  return result > 0;
}

void OnPrepare(uv_prepare_t* handle) {
  LoopPoll* state = static_cast<LoopPoll*>(handle->data);
  state->idle_start_ns = 0;
  if (state->max_ns == 0) return;
  const int timeout_ms = uv_backend_timeout(state->loop);
  if (timeout_ms == 0) return;  // the loop will not block: nothing to wait for
  const uint64_t start = NowNs();
  state->idle_start_ns = start;
  uint64_t window = state->window_ns;
  if (timeout_ms > 0) window = std::min(window, static_cast<uint64_t>(timeout_ms) * 1000000u);
  if (window == 0) return;
  state->spins++;
  for (;;) {
    if (EventReady(state->backend_fd)) {
      state->hits++;
      state->spin_ns += NowNs() - start;
      return;
    }
    const uint64_t now = NowNs();
    if (now - start >= window) {
      state->timeouts++;
      state->spin_ns += now - start;
      return;
    }
    sched_yield();  // another runnable thread on this CPU (a client, a pool thread) goes first
  }
}

void OnCheck(uv_check_t* handle) {
  LoopPoll* state = static_cast<LoopPoll*>(handle->data);
  if (state->idle_start_ns == 0) return;
  const uint64_t idle = NowNs() - state->idle_start_ns;
  state->idle_start_ns = 0;
  if (idle > state->max_ns) {
    state->window_ns /= 2;
    if (state->window_ns < kGrowStartNs) state->window_ns = 0;
  } else if (idle > state->window_ns) {
    state->window_ns = std::min(state->max_ns, std::max(kGrowStartNs, state->window_ns * 2));
  }
}

void OnClose(uv_handle_t* handle) {
  LoopPoll* state = static_cast<LoopPoll*>(handle->data);
  if (--state->open_handles == 0) delete state;
}

// The environment is going away: stop and close the handles; the state goes with the last one.
void Cleanup(void* data) {
  LoopPoll* state = static_cast<LoopPoll*>(data);
  if (current == state) current = nullptr;
  uv_prepare_stop(&state->prepare);
  uv_check_stop(&state->check);
  uv_close(reinterpret_cast<uv_handle_t*>(&state->prepare), OnClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&state->check), OnClose);
}

LoopPoll* StateFor(Napi::Env env) {
  if (current != nullptr) return current;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    throw Napi::Error::New(env, "loopPollSet: this thread has no event loop");
  }
  const int backend_fd = uv_backend_fd(loop);
  if (backend_fd < 0) throw Napi::Error::New(env, "loopPollSet: the event loop has no pollable backend descriptor");
  LoopPoll* state = new LoopPoll();
  state->loop = loop;
  state->backend_fd = backend_fd;
  uv_prepare_init(loop, &state->prepare);
  uv_check_init(loop, &state->check);
  state->prepare.data = state;
  state->check.data = state;
  state->open_handles = 2;
  uv_prepare_start(&state->prepare, OnPrepare);
  uv_check_start(&state->check, OnCheck);
  uv_unref(reinterpret_cast<uv_handle_t*>(&state->prepare));
  uv_unref(reinterpret_cast<uv_handle_t*>(&state->check));
  napi_add_env_cleanup_hook(env, Cleanup, state);
  current = state;
  return state;
}

// loopPollSet(maxSpinNs): sets the longest spin per idle period for this thread's loop; 0 stops
// spinning (the handles stay, costing one clock read per loop turn at most).
Napi::Value LoopPollSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "loopPollSet expects maxSpinNs (a number)");
  const double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0) || requested > static_cast<double>(kMaxSpinNsMax) || requested != static_cast<double>(static_cast<uint64_t>(requested))) {
    throw Napi::TypeError::New(env, "maxSpinNs must be an integer in [0, 10000000]");
  }
  LoopPoll* state = StateFor(env);
  state->max_ns = static_cast<uint64_t>(requested);
  state->window_ns = state->max_ns;  // start generous; an idle loop shrinks it within a few turns
  return env.Undefined();
}

// loopPollStats(): this thread's settings and counters (all zero before the first loopPollSet).
Napi::Value LoopPollStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object stats = Napi::Object::New(env);
  static const LoopPoll empty{};
  const LoopPoll& state = current != nullptr ? *current : empty;
  stats.Set("maxSpinNs", static_cast<double>(state.max_ns));
  stats.Set("windowNs", static_cast<double>(state.window_ns));
  stats.Set("spins", static_cast<double>(state.spins));
  stats.Set("hits", static_cast<double>(state.hits));
  stats.Set("timeouts", static_cast<double>(state.timeouts));
  stats.Set("spinNs", static_cast<double>(state.spin_ns));
  return stats;
}

}  // namespace

void InitLoopPoll(Napi::Env env, Napi::Object exports) {
  exports.Set("loopPollSet", Napi::Function::New(env, LoopPollSet, "loopPollSet"));
  exports.Set("loopPollStats", Napi::Function::New(env, LoopPollStats, "loopPollStats"));
}

}  // namespace cairn
