// cairn_native: the one Node-API module of Cairn. Each area of system calls lives in its own
// file with an Init function (file-ops.cc: extent-store file calls; kernel NBD attach later);
// this file only wires them into the module's exports.
#include <napi.h>

#include "file-ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cairn::InitFileOps(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(cairn_native, Init)
