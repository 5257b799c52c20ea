// Adaptive busy polling of the calling thread's event loop (see loop-poll.cc).
#ifndef CAIRN_NATIVE_LOOP_POLL_H_
#define CAIRN_NATIVE_LOOP_POLL_H_

#include <napi.h>

namespace cairn {

// Adds loopPollSet(maxSpinNs) and loopPollStats() to `exports`.
void InitLoopPoll(Napi::Env env, Napi::Object exports);

}  // namespace cairn

#endif  // CAIRN_NATIVE_LOOP_POLL_H_
