#include "arguments.h"

#include <cmath>
#include <string>

namespace cairn {

namespace {

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

}  // namespace

void RequireArgumentCount(const Napi::CallbackInfo& info, size_t count, const char* function) {
  if (info.Length() < count) {
    ThrowType(info.Env(), std::string(function) + " expects " + std::to_string(count) + " arguments, got " +
                              std::to_string(info.Length()));
  }
}

namespace {

int64_t IntegerValue(Napi::Env env, Napi::Value value, const std::string& name, int64_t minimum) {
  if (!value.IsNumber()) ThrowType(env, name + " must be a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  // NaN fails every comparison, so it lands here too.
  if (!(number >= static_cast<double>(minimum) && number <= static_cast<double>(kSafeIntegerMax))) {
    ThrowType(env, name + " must be an integer in [" + std::to_string(minimum) + ", 2^53 - 1], got " +
                       value.ToString().Utf8Value());
  }
  if (std::floor(number) != number) ThrowType(env, name + " must be an integer");
  return static_cast<int64_t>(number);
}

}  // namespace

int64_t IntegerArgument(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t minimum) {
  return IntegerValue(info.Env(), info[index], name, minimum);
}

int FdValue(Napi::Env env, Napi::Value value, const std::string& name) {
  const int64_t fd = IntegerValue(env, value, name, 0);
  if (fd > INT32_MAX) ThrowType(env, name + " must be a file descriptor (< 2^31)");
  return static_cast<int>(fd);
}

int FdArgument(const Napi::CallbackInfo& info, size_t index, const char* name) {
  return FdValue(info.Env(), info[index], name);
}

bool BooleanArgument(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value value = info[index];
  if (!value.IsBoolean()) ThrowType(info.Env(), std::string(name) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

ByteView BytesValue(Napi::Env env, Napi::Value value, const std::string& name) {
  if (!value.IsTypedArray()) ThrowType(env, name + " must be a Buffer or Uint8Array");
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_value array_buffer;
  size_t byte_offset = 0;
  napi_status status = napi_get_typedarray_info(env, value, &type, &length, &data, &array_buffer, &byte_offset);
  if (status != napi_ok) ThrowType(env, name + " could not be read as a typed array");
  if (type != napi_uint8_array) ThrowType(env, name + " must be a Buffer or Uint8Array");
  if (length > kIoBytesMax) ThrowType(env, name + " is longer than one system call transfers (0x7ffff000 bytes)");
  // A detached buffer reports no data and length 0: a valid, empty view.
  if (data == nullptr && length != 0) ThrowType(env, name + " has no backing store");
  return ByteView{static_cast<uint8_t*>(data), length};
}

ByteView BytesArgument(const Napi::CallbackInfo& info, size_t index, const char* name) {
  return BytesValue(info.Env(), info[index], name);
}

}  // namespace cairn
