#include "nbd-kernel.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "errno-error.h"
#include "nbd-ioctl.h"
#include "nbd-netlink.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace cairn {

namespace {

// Bounds of the arguments; the TypeScript wrapper enforces the same ones.
constexpr uint32_t kSocketsMax = 64;
constexpr size_t kBackendIdBytesMax = 255;
constexpr size_t kPathBytesMax = 4096;
constexpr int64_t kTimeoutSecondsMax = 365LL * 24 * 3600;
constexpr int64_t kIndexMax = 0x7fffffff;
constexpr int64_t kSafeIntegerMax = 9007199254740991LL;

// --- errors -----------------------------------------------------------------------------------

std::string NameOf(int error_number) {
  switch (error_number) {
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPROTO: return "EPROTO";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOTTY: return "ENOTTY";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENOTSOCK: return "ENOTSOCK";
    default: return ErrnoName(error_number);
  }
}

bool StepIs(const char* step, const char* name) { return std::strcmp(step, name) == 0; }

// What an errno from one step of an attach call means, in words an operator can act on.
std::string Explain(const char* step, int error_number) {
  if (error_number == EPERM || error_number == EACCES) {
    return "attaching kernel block devices needs root (CAP_SYS_ADMIN)";
  }
  if (StepIs(step, nbd::kStepSocket)) return "this kernel has no generic netlink sockets";
  if (StepIs(step, nbd::kStepResolveFamily) && error_number == ENOENT) {
    return "the kernel has no generic-netlink family \"nbd\": the nbd module is not loaded, or the kernel predates netlink NBD";
  }
  if (error_number == ETIMEDOUT && !StepIs(step, "ioctl NBD_DO_IT")) return "the kernel did not answer the netlink request in time";
  if (error_number == EPROTO) return "the kernel's netlink answer was malformed";
  if (error_number == EMSGSIZE) return "the kernel's netlink answer was larger than expected";
  if (StepIs(step, nbd::kStepConnect)) {
    if (error_number == EBUSY) return "the nbd device is in use: already connected, or opened by another program; try another device";
    if (error_number == EINVAL) {
      return "the kernel refused the configuration (block size a power of two from 512 to the page size, several connections only with multi-conn)";
    }
  }
  if (StepIs(step, nbd::kStepReconfigure) && error_number == EINVAL) {
    return "the kernel refused to reconfigure the device: it is not connected, was set up through ioctls, or has another backend identifier";
  }
  if ((StepIs(step, nbd::kStepDisconnect) || StepIs(step, nbd::kStepStatus)) && error_number == EINVAL) {
    return "no nbd device has that index";
  }
  if (StepIs(step, "open")) {
    if (error_number == ENOENT || error_number == ENXIO || error_number == ENODEV) {
      return "no such nbd device: load the driver with `modprobe nbd`, or pick an existing /dev/nbdX";
    }
    if (error_number == EBUSY) return "the device is mounted or held open exclusively by another program: unmount it first";
  }
  if (error_number == ENOTTY) return "the file is not an nbd device";
  if (StepIs(step, "ioctl NBD_SET_SOCK") && error_number == EBUSY) {
    return "the device is already running or being set up by another process";
  }
  if (StepIs(step, "ioctl NBD_DO_IT")) {
    if (error_number == ETIMEDOUT) return "a request got no reply within the I/O timeout and the kernel shut the device down";
    if (error_number == EBUSY) return "the device is already running";
    if (error_number == EINVAL) return "the driver refused to start the device (no sockets, or several without multi-conn)";
  }
  if (StepIs(step, "ioctl NBD_SET_SIZE") && (error_number == EINVAL || error_number == EBUSY)) {
    return "the driver refused the new size";
  }
  if (StepIs(step, "fsync") && error_number == EIO) return "the device reported an I/O error while writing its cached data";
  return "";
}

Napi::Error NbdError(Napi::Env env, int error_number, const char* step) {
  const std::string name = NameOf(error_number);
  std::string explanation = Explain(step, error_number);
  if (explanation.empty()) explanation = std::strerror(error_number);
  Napi::Error error = Napi::Error::New(env, std::string(step) + ": " + explanation + " (" + name + ")");
  error.Set("code", Napi::String::New(env, name));
  error.Set("errno", Napi::Number::New(env, -error_number));
  error.Set("syscall", Napi::String::New(env, step));
  return error;
}

// --- arguments --------------------------------------------------------------------------------

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

Napi::Object OptionsArgument(const Napi::CallbackInfo& info, size_t index, const char* function) {
  if (info.Length() <= index || !info[index].IsObject()) ThrowType(info.Env(), std::string(function) + " expects an options object");
  return info[index].As<Napi::Object>();
}

int64_t ToInteger(Napi::Env env, Napi::Value value, const std::string& name, int64_t minimum, int64_t maximum) {
  if (!value.IsNumber()) ThrowType(env, name + " must be a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= static_cast<double>(minimum) && number <= static_cast<double>(maximum)) || std::floor(number) != number) {
    ThrowType(env, name + " must be an integer in [" + std::to_string(minimum) + ", " + std::to_string(maximum) + "]");
  }
  return static_cast<int64_t>(number);
}

int64_t IntegerProperty(Napi::Object options, const char* name, int64_t minimum, int64_t maximum) {
  return ToInteger(options.Env(), options.Get(name), name, minimum, maximum);
}

// An optional integer: `fallback` when the property is undefined.
int64_t OptionalIntegerProperty(Napi::Object options, const char* name, int64_t minimum, int64_t maximum, int64_t fallback) {
  Napi::Value value = options.Get(name);
  if (value.IsUndefined()) return fallback;
  return ToInteger(options.Env(), value, name, minimum, maximum);
}

std::string ToText(Napi::Env env, Napi::Value value, const std::string& name, size_t bytes_max, bool allow_empty) {
  if (!value.IsString()) ThrowType(env, name + " must be a string");
  std::string text = value.As<Napi::String>().Utf8Value();
  if (text.size() > bytes_max) ThrowType(env, name + " is longer than " + std::to_string(bytes_max) + " bytes");
  if (!allow_empty && text.empty()) ThrowType(env, name + " must not be empty");
  if (text.find('\0') != std::string::npos) ThrowType(env, name + " must not contain NUL");
  return text;
}

std::string PathValue(Napi::Env env, Napi::Value value, const char* name) {
  std::string path = ToText(env, value, name, kPathBytesMax, false);
  if (path[0] != '/') ThrowType(env, std::string(name) + " must be an absolute path");
  return path;
}

std::vector<int> FdListProperty(Napi::Object options, const char* name, uint32_t minimum) {
  Napi::Env env = options.Env();
  Napi::Value value = options.Get(name);
  if (!value.IsArray()) ThrowType(env, std::string(name) + " must be an array of file descriptors");
  Napi::Array array = value.As<Napi::Array>();
  const uint32_t length = array.Length();
  if (length < minimum || length > kSocketsMax) {
    ThrowType(env, std::string(name) + " must hold " + std::to_string(minimum) + " to " + std::to_string(kSocketsMax) + " descriptors");
  }
  std::vector<int> fds;
  fds.reserve(length);
  for (uint32_t i = 0; i < length; i++) {
    fds.push_back(static_cast<int>(ToInteger(env, array.Get(i), std::string(name) + "[" + std::to_string(i) + "]", 0, 0x7fffffff)));
  }
  return fds;
}

// --- thread-pool calls ------------------------------------------------------------------------

// Runs one blocking call on the libuv pool and settles a promise with its result or NbdError.
class NbdWorker : public Napi::AsyncWorker {
 public:
  using Job = std::function<int(const char** step)>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  NbdWorker(Napi::Env env, const char* name, Job job, Result result)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)),
        result_(std::move(result)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { error_number_ = job_(&step_); }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (error_number_ != 0) {
      deferred_.Reject(NbdError(env, error_number_, step_).Value());
      return;
    }
    deferred_.Resolve(result_ ? result_(env) : env.Undefined());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  Result result_;
  int error_number_ = 0;
  const char* step_ = "";
};

Napi::Value Queue(Napi::Env env, const char* name, NbdWorker::Job job, NbdWorker::Result result = nullptr) {
  auto* worker = new NbdWorker(env, name, std::move(job), std::move(result));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// nbdSocketPair(): [a, b], a connected AF_UNIX stream pair, both close-on-exec.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) throw NbdError(info.Env(), errno, "socketpair");
  Napi::Array pair = Napi::Array::New(info.Env(), 2);
  pair.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  pair.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return pair;
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

// nbdNetlinkConnect(options): Promise<index>. The socket descriptors are closed once the call
// settles, whatever its outcome (the kernel holds its own references).
Napi::Value NetlinkConnect(const Napi::CallbackInfo& info) {
  Napi::Object options = OptionsArgument(info, 0, "nbdNetlinkConnect");
  nbd::ConnectRequest request;
  request.socket_fds = FdListProperty(options, "socketFds", 1);
  request.size_bytes = static_cast<uint64_t>(IntegerProperty(options, "sizeBytes", 1, kSafeIntegerMax));
  request.block_bytes = static_cast<uint64_t>(IntegerProperty(options, "blockBytes", 512, 65536));
  request.server_flags = static_cast<uint64_t>(IntegerProperty(options, "serverFlags", 0, 0xffff));
  request.client_flags = static_cast<uint64_t>(IntegerProperty(options, "clientFlags", 0, 3));
  request.io_timeout_seconds = static_cast<uint64_t>(IntegerProperty(options, "ioTimeoutSeconds", 0, kTimeoutSecondsMax));
  request.dead_conn_timeout_seconds =
      static_cast<uint64_t>(IntegerProperty(options, "deadConnTimeoutSeconds", 0, kTimeoutSecondsMax));
  request.backend_id = ToText(info.Env(), options.Get("backendId"), "backendId", kBackendIdBytesMax, false);
  request.index = OptionalIntegerProperty(options, "index", 0, kIndexMax, -1);
  auto index = std::make_shared<uint32_t>(0);
  return Queue(
      info.Env(), "cairn.nbdNetlinkConnect",
      [request, index](const char** step) {
        const int result = nbd::Connect(request, index.get(), step);
        CloseAll(request.socket_fds);
        return result;
      },
      [index](Napi::Env env) { return Napi::Number::New(env, *index); });
}

// nbdNetlinkReconfigure(options): Promise<void>; socket descriptors are consumed as by connect.
Napi::Value NetlinkReconfigure(const Napi::CallbackInfo& info) {
  Napi::Object options = OptionsArgument(info, 0, "nbdNetlinkReconfigure");
  nbd::ReconfigureRequest request;
  request.index = static_cast<uint32_t>(IntegerProperty(options, "index", 0, kIndexMax));
  request.backend_id = ToText(info.Env(), options.Get("backendId"), "backendId", kBackendIdBytesMax, false);
  request.socket_fds = FdListProperty(options, "socketFds", 0);
  request.size_bytes = static_cast<uint64_t>(OptionalIntegerProperty(options, "sizeBytes", 1, kSafeIntegerMax, 0));
  request.io_timeout_seconds =
      static_cast<uint64_t>(OptionalIntegerProperty(options, "ioTimeoutSeconds", 1, kTimeoutSecondsMax, 0));
  request.dead_conn_timeout_seconds =
      static_cast<uint64_t>(OptionalIntegerProperty(options, "deadConnTimeoutSeconds", 1, kTimeoutSecondsMax, 0));
  return Queue(info.Env(), "cairn.nbdNetlinkReconfigure", [request](const char** step) {
    const int result = nbd::Reconfigure(request, step);
    CloseAll(request.socket_fds);
    return result;
  });
}

// nbdNetlinkDisconnect(index): Promise<void>.
Napi::Value NetlinkDisconnect(const Napi::CallbackInfo& info) {
  if (info.Length() < 1) ThrowType(info.Env(), "nbdNetlinkDisconnect expects an index");
  const uint32_t index = static_cast<uint32_t>(ToInteger(info.Env(), info[0], "index", 0, kIndexMax));
  return Queue(info.Env(), "cairn.nbdNetlinkDisconnect", [index](const char** step) { return nbd::Disconnect(index, step); });
}

// nbdNetlinkStatus(index): Promise<Array<{ index, connected }>>; index -1 lists every device.
Napi::Value NetlinkStatus(const Napi::CallbackInfo& info) {
  if (info.Length() < 1) ThrowType(info.Env(), "nbdNetlinkStatus expects an index (-1 for all)");
  const int64_t index = ToInteger(info.Env(), info[0], "index", -1, kIndexMax);
  auto devices = std::make_shared<std::vector<nbd::DeviceStatus>>();
  return Queue(
      info.Env(), "cairn.nbdNetlinkStatus",
      [index, devices](const char** step) { return nbd::Status(index, devices.get(), step); },
      [devices](Napi::Env env) {
        Napi::Array list = Napi::Array::New(env, devices->size());
        for (size_t i = 0; i < devices->size(); i++) {
          Napi::Object item = Napi::Object::New(env);
          item.Set("index", Napi::Number::New(env, (*devices)[i].index));
          item.Set("connected", Napi::Boolean::New(env, (*devices)[i].connected));
          list.Set(static_cast<uint32_t>(i), item);
        }
        return list;
      });
}

// nbdIoctlDisconnect(devicePath): Promise<void>.
Napi::Value IoctlDisconnect(const Napi::CallbackInfo& info) {
  if (info.Length() < 1) ThrowType(info.Env(), "nbdIoctlDisconnect expects a device path");
  const std::string path = PathValue(info.Env(), info[0], "devicePath");
  return Queue(info.Env(), "cairn.nbdIoctlDisconnect", [path](const char** step) { return nbd::IoctlDisconnect(path, step); });
}

// nbdIoctlSetSize(devicePath, sizeBytes): Promise<void>.
Napi::Value IoctlSetSize(const Napi::CallbackInfo& info) {
  if (info.Length() < 2) ThrowType(info.Env(), "nbdIoctlSetSize expects a device path and a size");
  const std::string path = PathValue(info.Env(), info[0], "devicePath");
  const uint64_t size = static_cast<uint64_t>(ToInteger(info.Env(), info[1], "sizeBytes", 1, kSafeIntegerMax));
  return Queue(info.Env(), "cairn.nbdIoctlSetSize", [path, size](const char** step) { return nbd::IoctlSetSize(path, size, step); });
}

// nbdFlushDevice(devicePath, exclusive): Promise<void>; open (O_EXCL if exclusive) + fsync.
Napi::Value FlushDevice(const Napi::CallbackInfo& info) {
  if (info.Length() < 2) ThrowType(info.Env(), "nbdFlushDevice expects a device path and a boolean");
  const std::string path = PathValue(info.Env(), info[0], "devicePath");
  if (!info[1].IsBoolean()) ThrowType(info.Env(), "exclusive must be a boolean");
  const bool exclusive = info[1].As<Napi::Boolean>().Value();
  return Queue(info.Env(), "cairn.nbdFlushDevice", [path, exclusive](const char** step) { return nbd::FlushDevice(path, exclusive, step); });
}

// --- the ioctl device thread ------------------------------------------------------------------

struct IoctlEvent {
  enum Kind { kStarted, kSetupFailed, kExited } kind;
  int error_number;
  const char* step;
};

struct IoctlContext;
void DeliverIoctlEvent(Napi::Env env, Napi::Function on_exit, IoctlContext* context, IoctlEvent* event);
using IoctlFunction = Napi::TypedThreadSafeFunction<IoctlContext, IoctlEvent, DeliverIoctlEvent>;

// Lives as long as the thread-safe function: the promise of the setup and the function itself.
struct IoctlContext {
  explicit IoctlContext(Napi::Env env) : started(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred started;
  IoctlFunction function;
};

void DeliverIoctlEvent(Napi::Env env, Napi::Function on_exit, IoctlContext* context, IoctlEvent* event) {
  std::unique_ptr<IoctlEvent> owned(event);
  if (env == nullptr || context == nullptr) return;  // the environment is shutting down
  try {
    Napi::HandleScope scope(env);
    switch (owned->kind) {
      case IoctlEvent::kStarted:
        // From here the device thread lives as long as the device; it must not keep the event
        // loop (and so the process) alive by itself. Until now it had to, or an exiting
        // process would tear the environment down under the pending setup.
        context->function.Unref(env);
        context->started.Resolve(env.Undefined());
        break;
      case IoctlEvent::kSetupFailed:
        context->started.Reject(NbdError(env, owned->error_number, owned->step).Value());
        break;
      case IoctlEvent::kExited: {
        Napi::Value argument = owned->error_number == 0 ? env.Null() : NbdError(env, owned->error_number, owned->step).Value();
        on_exit.Call({argument});
        break;
      }
    }
  } catch (const Napi::Error& error) {
    // An exception thrown by onExit is the callback's bug: report it as uncaught, never abort.
    napi_fatal_exception(env, error.Value());
  }
}

void FinalizeIoctlContext(Napi::Env, void*, IoctlContext* context) { delete context; }

// The dedicated thread: setup, DO_IT for the device's life, teardown. Every signal is blocked:
// a signal delivered here would interrupt DO_IT, and the driver would shut the device down.
void RunIoctlDevice(IoctlFunction function, nbd::IoctlConnectRequest request) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  int device_fd = -1;
  const char* step = "";
  const int setup = nbd::IoctlSetup(request, &device_fd, &step);
  if (setup != 0) {
    function.BlockingCall(new IoctlEvent{IoctlEvent::kSetupFailed, setup, step});
    function.Release();
    return;
  }
  function.BlockingCall(new IoctlEvent{IoctlEvent::kStarted, 0, ""});
  const int run = nbd::IoctlRun(device_fd, &step);
  function.BlockingCall(new IoctlEvent{IoctlEvent::kExited, run, step});
  function.Release();
}

// nbdIoctlConnect(options, onExit): Promise<void> that resolves once the device is configured
// and its thread is entering NBD_DO_IT; onExit(error | null) runs when NBD_DO_IT returns. The
// socket descriptors are consumed. The thread does not keep the event loop alive.
Napi::Value IoctlConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object options = OptionsArgument(info, 0, "nbdIoctlConnect");
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowType(env, "nbdIoctlConnect expects an onExit callback");
  nbd::IoctlConnectRequest request;
  request.device_path = PathValue(env, options.Get("devicePath"), "devicePath");
  request.socket_fds = FdListProperty(options, "socketFds", 1);
  request.block_bytes = static_cast<uint64_t>(IntegerProperty(options, "blockBytes", 512, 65536));
  request.size_bytes = static_cast<uint64_t>(IntegerProperty(options, "sizeBytes", static_cast<int64_t>(request.block_bytes), kSafeIntegerMax));
  request.server_flags = static_cast<uint64_t>(IntegerProperty(options, "serverFlags", 0, 0xffff));
  request.io_timeout_seconds = static_cast<uint64_t>(IntegerProperty(options, "ioTimeoutSeconds", 0, kTimeoutSecondsMax));
  auto* context = new IoctlContext(env);
  Napi::Promise promise = context->started.Promise();
  IoctlFunction function = IoctlFunction::New(env, info[1].As<Napi::Function>(), "cairn.nbdDoIt", 0, 1, context,
                                              FinalizeIoctlContext, static_cast<void*>(nullptr));
  context->function = function;
  const std::vector<int> socket_fds = request.socket_fds;
  try {
    std::thread(RunIoctlDevice, function, std::move(request)).detach();
  } catch (const std::system_error& error) {
    CloseAll(socket_fds);
    function.Release();
    throw NbdError(env, error.code().value() != 0 ? error.code().value() : EAGAIN, "pthread_create");
  }
  return promise;
}

// setIoFlusher(): PR_SET_IO_FLUSHER for the calling thread (and threads it creates later), so
// memory reclaim never waits on I/O that this process itself must serve.
Napi::Value SetIoFlusher(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0) throw NbdError(info.Env(), errno, "prctl PR_SET_IO_FLUSHER");
  return info.Env().Undefined();
}

}  // namespace

void InitNbdKernel(Napi::Env env, Napi::Object exports) {
  exports.Set("nbdSocketPair", Napi::Function::New(env, SocketPair, "nbdSocketPair"));
  exports.Set("nbdNetlinkConnect", Napi::Function::New(env, NetlinkConnect, "nbdNetlinkConnect"));
  exports.Set("nbdNetlinkReconfigure", Napi::Function::New(env, NetlinkReconfigure, "nbdNetlinkReconfigure"));
  exports.Set("nbdNetlinkDisconnect", Napi::Function::New(env, NetlinkDisconnect, "nbdNetlinkDisconnect"));
  exports.Set("nbdNetlinkStatus", Napi::Function::New(env, NetlinkStatus, "nbdNetlinkStatus"));
  exports.Set("nbdIoctlConnect", Napi::Function::New(env, IoctlConnect, "nbdIoctlConnect"));
  exports.Set("nbdIoctlDisconnect", Napi::Function::New(env, IoctlDisconnect, "nbdIoctlDisconnect"));
  exports.Set("nbdIoctlSetSize", Napi::Function::New(env, IoctlSetSize, "nbdIoctlSetSize"));
  exports.Set("nbdFlushDevice", Napi::Function::New(env, FlushDevice, "nbdFlushDevice"));
  exports.Set("setIoFlusher", Napi::Function::New(env, SetIoFlusher, "setIoFlusher"));
}

}  // namespace cairn
