// Errors thrown by the addon. Every failing system call becomes a JavaScript Error shaped like
// Node's own fs errors (code = errno name, errno = negative errno value, syscall) plus a plain
// explanation of what it means for Cairn, so an operator reading a log knows what to do.
#ifndef CAIRN_NATIVE_ERRNO_ERROR_H_
#define CAIRN_NATIVE_ERRNO_ERROR_H_

#include <napi.h>

#include <string>

namespace cairn {

// The symbolic name of an errno value ("EBADF"); "E<number>" for values the table lacks.
std::string ErrnoName(int error_number);

// Builds (does not throw) an Error: message "<syscall>: <explanation> (<CODE>)", properties
// code, errno (negative, as Node's fs errors), syscall. An empty explanation means strerror().
Napi::Error ErrnoError(Napi::Env env, int error_number, const char* syscall,
                       const std::string& explanation);

}  // namespace cairn

#endif  // CAIRN_NATIVE_ERRNO_ERROR_H_
