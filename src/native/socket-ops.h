// Socket calls for the NBD data path: bulk transfers of large payloads on the thread pool, so
// the copies of a 1 MiB READ reply or WRITE payload run on a pool thread instead of the main
// thread. See socket-ops.cc.
#ifndef CAIRN_NATIVE_SOCKET_OPS_H_
#define CAIRN_NATIVE_SOCKET_OPS_H_

#include <napi.h>

namespace cairn {

void InitSocketOps(Napi::Env env, Napi::Object exports);

}  // namespace cairn

#endif  // CAIRN_NATIVE_SOCKET_OPS_H_
