// loop-poll.cc: adaptive busy polling of the calling thread's event loop ("hybrid polling").
//
//   loopPollSet(maxSpinNs): void   0 turns it off; otherwise spin at most this long per idle period
//   loopPollStats(): { maxSpinNs, windowNs, spins, hits, timeouts, contended, spinNs }
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
// thread is already on a CPU when they arrive. (Descriptors whose watchers were started in this
// loop turn are registered with epoll only inside libuv's poll, after the spin; their events
// then wait for the spin to end, at most one window.) Timers are not epoll events, so the
// window is cut to the loop's own poll timeout, with the loop's clock refreshed before and after
// the spin, and a due timer is not delayed; when the loop will not block (pending callbacks,
// immediates, closing handles) there is no spin at all.
//
// A spin also ends when one of its yields comes back late (kContendedYieldNs): another thread
// ran on this CPU meanwhile, so the CPUs are busy and no halted vCPU is waiting to be woken; the
// spin could only take CPU time from pool threads and the client. Measured with 1 MiB writes
// from fio on this 2-vCPU VM: spinning without this check was 10-25% slower than no spin at all;
// with it the two are even, and QD1 write + flush keeps its gain.
//
// The window adapts like the kernel's haltpoll cpuidle governor. The idle period is the spin
// plus the time libuv then spent blocked in epoll_wait (its idle-time metric; the callbacks of
// the poll phase are work, not idle):
//   - longer than the window but within maxSpinNs: a longer spin would have caught it, so the
//     window grows (to kGrowStartNs, then doubling, at most maxSpinNs);
//   - longer than maxSpinNs, or ended by the loop's next timer (which no spin can catch): the
//     window halves, and below kGrowStartNs it is 0.
// An idle daemon therefore stops spinning after a few wake-ups, and a busy one spins only as
// long as its gaps between events are short.
//
// State is per thread (one Node environment per thread: the main thread or a worker), so each
// event loop has its own handles and statistics. The handles are unreferenced: they never keep
// a loop alive. They are closed from an asynchronous environment cleanup hook that completes only
// when both close callbacks have run, so a worker thread never unloads this addon under them.
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
// A sched_yield that returns this much later ran another thread first (a bare yield is ~1 us).
constexpr uint64_t kContendedYieldNs = 10000;
// The longest window a caller may configure: 10 ms of spinning per idle period is already far
// past any wake-up cost it could save.
constexpr uint64_t kMaxSpinNsMax = 10000000;

struct LoopPoll {
  uv_prepare_t prepare;
  uv_check_t check;
  uv_loop_t* loop = nullptr;
  int backend_fd = -1;
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;
  uint64_t max_ns = 0;
  uint64_t window_ns = 0;
  // The idle period being measured (idle_start_ns 0: none): when it began, the loop's idle-time
  // metric then, how long the spin ran, and how far away the loop's next timer was (0: none).
  uint64_t idle_start_ns = 0;
  uint64_t idle_metric_start_ns = 0;
  uint64_t idle_spin_ns = 0;
  uint64_t idle_timer_ns = 0;
  bool idle_metric_seen = false;  // libuv's idle-time metric is on (Node turns it on)
  int open_handles = 0;
  // Statistics since the state was created.
  uint64_t spins = 0;     // idle periods that began with a spin
  uint64_t hits = 0;      // spins ended by a ready event
  uint64_t timeouts = 0;  // spins that ran out their window
  uint64_t contended = 0; // spins ended because a yield let another thread run
  uint64_t spin_ns = 0;   // time spent spinning (wall time: other threads run while it yields)
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
  // libuv computes its poll timeout from the cached loop time: refresh it, or the spin would eat
  // into the time left before the next timer without libuv knowing.
  uv_update_time(state->loop);
  const int timeout_ms = uv_backend_timeout(state->loop);
  if (timeout_ms == 0) return;  // the loop will not block: nothing to wait for
  const uint64_t start = NowNs();
  state->idle_start_ns = start;
  state->idle_metric_start_ns = uv_metrics_idle_time(state->loop);
  state->idle_spin_ns = 0;
  state->idle_timer_ns = timeout_ms > 0 ? static_cast<uint64_t>(timeout_ms) * 1000000u : 0;
  uint64_t window = state->window_ns;
  if (timeout_ms > 0) window = std::min(window, state->idle_timer_ns);
  if (window == 0) return;
  state->spins++;
  // Which counter ends the spin: an event is ready, the window ran out, or the CPU is busy.
  uint64_t* ended_by = nullptr;
  uint64_t now = start;
  while (ended_by == nullptr) {
    const bool ready = EventReady(state->backend_fd);
    now = NowNs();
    if (ready) {
      ended_by = &state->hits;
    } else if (now - start >= window) {
      ended_by = &state->timeouts;
    } else {
      // Another runnable thread on this CPU (a client, a pool thread) goes first. A yield that
      // came back late means one did run: the CPUs are busy, so there is no halted vCPU whose
      // wake-up the spin could save, only CPU time it would take from that thread: stop.
      sched_yield();
      const uint64_t after = NowNs();
      if (after - now >= kContendedYieldNs) {
        ended_by = &state->contended;
        now = after;
      }
    }
  }
  (*ended_by)++;
  state->idle_spin_ns = now - start;
  state->spin_ns += now - start;
  uv_update_time(state->loop);  // libuv's poll timeout must count the time the spin took
}

void OnCheck(uv_check_t* handle) {
  LoopPoll* state = static_cast<LoopPoll*>(handle->data);
  if (state->idle_start_ns == 0) return;
  // The idle period is the spin plus the time libuv then spent blocked in epoll_wait (its idle
  // metric), not the I/O callbacks that ran after: a request that takes long to serve must not
  // look like a long idle period and switch spinning off. Without the metric, the wall time.
  const uint64_t metric = uv_metrics_idle_time(state->loop);
  if (metric != 0) state->idle_metric_seen = true;
  const uint64_t idle = state->idle_metric_seen ? state->idle_spin_ns + (metric - state->idle_metric_start_ns)
                                                : NowNs() - state->idle_start_ns;
  state->idle_start_ns = 0;
  // A period that lasted until the loop's next timer was most likely ended by that timer, which
  // no spin can catch: it shrinks the window like a long one (a frequent timer must not keep the
  // loop spinning until each expiry).
  // (libuv rounds the timeout to milliseconds: within an eighth of it counts.)
  const bool ended_by_timer = state->idle_timer_ns != 0 && idle * 8 >= state->idle_timer_ns * 7;
  if (idle > state->max_ns || ended_by_timer) {
    state->window_ns /= 2;
    if (state->window_ns < kGrowStartNs) state->window_ns = 0;
  } else if (idle > state->window_ns && !ended_by_timer) {
    state->window_ns = std::min(state->max_ns, std::max(kGrowStartNs, state->window_ns * 2));
  }
}

void OnClose(uv_handle_t* handle) {
  LoopPoll* state = static_cast<LoopPoll*>(handle->data);
  if (--state->open_handles > 0) return;
  // Only now may the environment finish tearing down (and unload this addon): the close
  // callbacks above are code in this addon.
  napi_remove_async_cleanup_hook(state->cleanup_hook);
  delete state;
}

// The environment is going away: stop and close the handles. An asynchronous cleanup hook,
// because the close callbacks run on a later loop turn, and a synchronous hook would let Node
// unload the addon (a worker thread's last user of it) before they run.
void Cleanup(napi_async_cleanup_hook_handle hook, void* data) {
  LoopPoll* state = static_cast<LoopPoll*>(data);
  state->cleanup_hook = hook;
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
  napi_async_cleanup_hook_handle hook = nullptr;
  if (napi_add_async_cleanup_hook(env, Cleanup, state, &hook) != napi_ok) {
    delete state;
    throw Napi::Error::New(env, "loopPollSet: cannot register the environment's cleanup hook");
  }
  state->cleanup_hook = hook;
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
  if (requested == 0 && current == nullptr) return env.Undefined();  // off, and never on: nothing to set up
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
  stats.Set("contended", static_cast<double>(state.contended));
  return stats;
}

}  // namespace

void InitLoopPoll(Napi::Env env, Napi::Object exports) {
  exports.Set("loopPollSet", Napi::Function::New(env, LoopPollSet, "loopPollSet"));
  exports.Set("loopPollStats", Napi::Function::New(env, LoopPollStats, "loopPollStats"));
}

}  // namespace cairn
