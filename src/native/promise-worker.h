// PromiseWorker: a Napi::AsyncWorker whose Execute() runs one blocking system-call sequence on
// the libuv thread pool and settles a promise. Execute() records a failure with Fail(errno,
// syscall) instead of SetError, so the rejection is built on the main thread by MakeError and
// carries code / errno / syscall like every synchronous failure of the addon.
#ifndef CAIRN_NATIVE_PROMISE_WORKER_H_
#define CAIRN_NATIVE_PROMISE_WORKER_H_

#include <napi.h>

namespace cairn {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  // Thread-pool side: remembers the first failure; the promise rejects with it.
  void Fail(int error_number, const char* syscall) {
    if (error_number_ != 0) return;
    error_number_ = error_number;
    failed_syscall_ = syscall;
  }
  // Main-thread side: the resolution value, and the error a recorded failure becomes.
  virtual Napi::Value Result(Napi::Env env) = 0;
  virtual Napi::Error MakeError(Napi::Env env, int error_number, const char* syscall) = 0;
  virtual void Annotate(Napi::Error& /*error*/) {}

 private:
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (error_number_ == 0) {
      deferred_.Resolve(Result(env));
      return;
    }
    Napi::Error error = MakeError(env, error_number_, failed_syscall_);
    Annotate(error);
    deferred_.Reject(error.Value());
  }
  Napi::Promise::Deferred deferred_;
  int error_number_ = 0;
  const char* failed_syscall_ = "";
};

// Queues the worker (the pool owns and deletes it) and returns its promise.
template <typename Worker>
Napi::Value QueueWorker(Worker* worker) {
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace cairn

#endif  // CAIRN_NATIVE_PROMISE_WORKER_H_
