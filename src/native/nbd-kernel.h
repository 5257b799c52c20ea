// Node-API functions that attach volumes to the local kernel's NBD driver: a socketpair for each
// connection, the netlink commands (CONNECT, RECONFIGURE, DISCONNECT, STATUS), the ioctl
// fallback with NBD_DO_IT on a dedicated thread, device flush and resize, and PR_SET_IO_FLUSHER.
// Only mechanism lives here; which method, how many connections, timeouts, identifiers and
// retries are decided in TypeScript (src/attach).
#ifndef CAIRN_NATIVE_NBD_KERNEL_H_
#define CAIRN_NATIVE_NBD_KERNEL_H_

#include <napi.h>

namespace cairn {

// Adds the nbd* functions and setIoFlusher to `exports`.
void InitNbdKernel(Napi::Env env, Napi::Object exports);

}  // namespace cairn

#endif  // CAIRN_NATIVE_NBD_KERNEL_H_
