// sd_notify(3) without libsystemd: one datagram to the AF_UNIX socket systemd names in
// $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'). Node has no AF_UNIX
// datagram sockets, hence this call. Policy (when to send READY=1, STOPPING=1, WATCHDOG=1) lives
// in TypeScript.
#ifndef CAIRN_NATIVE_NOTIFY_H_
#define CAIRN_NATIVE_NOTIFY_H_

#include <napi.h>

namespace cairn {

// Adds sdNotify(socketPath, message) to `exports`.
void InitNotify(Napi::Env env, Napi::Object exports);

}  // namespace cairn

#endif  // CAIRN_NATIVE_NOTIFY_H_
