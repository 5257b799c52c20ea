// cairn_native: the one Node-API module of Cairn. Each area of system calls lives in its own
// file with an Init function (file-ops.cc: extent-store file calls; loop-poll.cc: adaptive busy
// polling of the event loop; nbd-kernel.cc: kernel NBD attach; notify.cc: systemd notify;
// socket-ops.cc: bulk NBD socket transfers); this file only wires them into the module's exports.
#include <napi.h>

#include "file-ops.h"
#include "loop-poll.h"
#include "nbd-kernel.h"
#include "notify.h"
#include "socket-ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cairn::InitFileOps(env, exports);
  cairn::InitLoopPoll(env, exports);
  cairn::InitNbdKernel(env, exports);
  cairn::InitNotify(env, exports);
  cairn::InitSocketOps(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(cairn_native, Init)
