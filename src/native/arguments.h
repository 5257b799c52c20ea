// Argument checks for every exported function. The TypeScript wrapper validates first; these
// checks run again here so that no JavaScript value, however wrong, can crash the process or
// reach a system call with a truncated or negative number. Failures throw TypeError.
#ifndef CAIRN_NATIVE_ARGUMENTS_H_
#define CAIRN_NATIVE_ARGUMENTS_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace cairn {

// 2^53 - 1: the largest integer a JavaScript number holds exactly.
constexpr int64_t kSafeIntegerMax = 9007199254740991LL;
// Linux transfers at most this many bytes in one read/write call.
constexpr size_t kIoBytesMax = 0x7ffff000;

// A byte range of a Uint8Array (Buffer); data points at the view's first byte.
struct ByteView {
  uint8_t* data;
  size_t length;
};

void RequireArgumentCount(const Napi::CallbackInfo& info, size_t count, const char* function);
// A file descriptor: an integer number in [0, 2^31 - 1].
int FdArgument(const Napi::CallbackInfo& info, size_t index, const char* name);
// An integer number in [minimum, 2^53 - 1].
int64_t IntegerArgument(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t minimum);
bool BooleanArgument(const Napi::CallbackInfo& info, size_t index, const char* name);
// A Uint8Array (Buffer included) of at most kIoBytesMax bytes.
ByteView BytesArgument(const Napi::CallbackInfo& info, size_t index, const char* name);

// The same checks for a value that is not itself an argument (an array element, an object field).
int FdValue(Napi::Env env, Napi::Value value, const std::string& name);
ByteView BytesValue(Napi::Env env, Napi::Value value, const std::string& name);

}  // namespace cairn

#endif  // CAIRN_NATIVE_ARGUMENTS_H_
