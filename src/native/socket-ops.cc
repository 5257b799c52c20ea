// socket-ops.cc: the NBD connection's side channel to its socket.
//
//   socketDup(fd): number        a second descriptor (close-on-exec) for the same socket
//   socketShutdown(fd): void     shutdown(SHUT_RDWR): wakes any transfer blocked on the socket
//   socketClose(fd): void        close(2) of a descriptor socketDup returned
//   sendAsync(fd, source, idleMs): Promise<number>
//   recvAsync(fd, target, idleMs): Promise<number>
//
// The transfers run on the libuv thread pool: send or receive until the whole buffer has moved,
// waiting with poll(2) while the socket is not ready. They give up early — resolving with the
// bytes moved so far — when the peer moves nothing for idleMs (a stalled or slow peer never
// holds a pool thread for long; the caller finishes the transfer on the event loop), when the
// peer ends its side (receive), or after socketShutdown. Errors (ECONNRESET, EPIPE, ...)
// reject. The buffer stays referenced until the transfer settles.
//
// The caller must guarantee that nothing else reads (recvAsync) or writes (sendAsync) the socket
// while a transfer runs, and must not close the descriptor until it has settled: a closed
// number can be reused by another file at once. That is why transfers use a socketDup copy that
// Node never closes.
#include "socket-ops.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "arguments.h"
#include "errno-error.h"
#include "promise-worker.h"

namespace cairn {

namespace {

// The longest a caller may ask a transfer to wait for a silent peer.
constexpr int64_t kIdleMsMax = 60000;

std::string ExplainSocket(int error_number) {
  switch (error_number) {
    case EPIPE:
    case ECONNRESET: return "the peer closed the connection";
    case EBADF: return "the descriptor is not open";
    case ENOTSOCK: return "the descriptor is not a socket";
    case ETIMEDOUT: return "the connection timed out";
    default: return "";
  }
}

class SocketTransferWorker : public PromiseWorker {
 public:
  SocketTransferWorker(Napi::Env env, bool send, int fd, Napi::Value buffer, ByteView view, int idle_ms)
      : PromiseWorker(env, send ? "cairn.sendAsync" : "cairn.recvAsync"),
        send_(send), fd_(fd), buffer_(Napi::Persistent(buffer.As<Napi::Object>())), view_(view), idle_ms_(idle_ms) {}

 protected:
  void Execute() override {
    while (done_ < view_.length) {
      uint8_t* at = view_.data + done_;
      const size_t remaining = view_.length - done_;
      const ssize_t result = send_ ? send(fd_, at, remaining, MSG_DONTWAIT | MSG_NOSIGNAL)
                                   : recv(fd_, at, remaining, MSG_DONTWAIT);
      if (result > 0) {
        done_ += static_cast<size_t>(result);
        continue;
      }
      if (result == 0) return;  // receive: the peer ended its side (or the socket was shut down)
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Fail(errno, send_ ? "send" : "recv");
        return;
      }
      if (!WaitReady()) return;
    }
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(done_)); }
  Napi::Error MakeError(Napi::Env env, int error_number, const char* syscall) override {
    return ErrnoError(env, error_number, syscall, ExplainSocket(error_number));
  }

 private:
  // Waits until the socket is ready again; false when the peer stayed silent for idle_ms or the
  // socket was shut down (the transfer then ends with what it moved).
  bool WaitReady() {
    struct pollfd entry = {fd_, static_cast<short>(send_ ? POLLOUT : POLLIN), 0};
    for (;;) {
      const int ready = poll(&entry, 1, idle_ms_);
      if (ready > 0) {
        // POLLHUP/POLLERR: the next send/recv reports it (0 or an errno); no busy loop follows,
        // because that call ends the transfer.
        return true;
      }
      if (ready == 0) return false;
      if (errno == EINTR) continue;
      Fail(errno, "poll");
      return false;
    }
  }

  bool send_;
  int fd_;
  Napi::ObjectReference buffer_;
  ByteView view_;
  int idle_ms_;
  size_t done_ = 0;
};

Napi::Value Transfer(const Napi::CallbackInfo& info, bool send) {
  const char* name = send ? "sendAsync" : "recvAsync";
  RequireArgumentCount(info, 3, name);
  const int fd = FdArgument(info, 0, "fd");
  const ByteView view = BytesArgument(info, 1, send ? "source" : "target");
  const int64_t idle_ms = IntegerArgument(info, 2, "idleMs", 1);
  if (idle_ms > kIdleMsMax) throw Napi::TypeError::New(info.Env(), "idleMs must be at most 60000");
  return QueueWorker(new SocketTransferWorker(info.Env(), send, fd, info[1], view, static_cast<int>(idle_ms)));
}

Napi::Value SendAsync(const Napi::CallbackInfo& info) { return Transfer(info, true); }
Napi::Value RecvAsync(const Napi::CallbackInfo& info) { return Transfer(info, false); }

Napi::Value SocketDup(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 1, "socketDup");
  const int fd = FdArgument(info, 0, "fd");
  int type = 0;
  socklen_t length = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) < 0) {
    throw ErrnoError(info.Env(), errno, "getsockopt", ExplainSocket(errno));
  }
  if (type != SOCK_STREAM) throw ErrnoError(info.Env(), ENOTSUP, "socketDup", "the descriptor is not a stream socket");
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw ErrnoError(info.Env(), errno, "fcntl", "");
  return Napi::Number::New(info.Env(), copy);
}

Napi::Value SocketShutdown(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 1, "socketShutdown");
  const int fd = FdArgument(info, 0, "fd");
  // ENOTCONN: the peer is gone already, which is what shutting down wanted.
  if (shutdown(fd, SHUT_RDWR) < 0 && errno != ENOTCONN) throw ErrnoError(info.Env(), errno, "shutdown", ExplainSocket(errno));
  return info.Env().Undefined();
}

Napi::Value SocketClose(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 1, "socketClose");
  const int fd = FdArgument(info, 0, "fd");
  // close(2) releases the descriptor even when it reports EINTR or EIO on Linux: never retry.
  if (close(fd) < 0 && errno != EINTR) throw ErrnoError(info.Env(), errno, "close", ExplainSocket(errno));
  return info.Env().Undefined();
}

}  // namespace

void InitSocketOps(Napi::Env env, Napi::Object exports) {
  exports.Set("socketDup", Napi::Function::New(env, SocketDup, "socketDup"));
  exports.Set("socketShutdown", Napi::Function::New(env, SocketShutdown, "socketShutdown"));
  exports.Set("socketClose", Napi::Function::New(env, SocketClose, "socketClose"));
  exports.Set("sendAsync", Napi::Function::New(env, SendAsync, "sendAsync"));
  exports.Set("recvAsync", Napi::Function::New(env, RecvAsync, "recvAsync"));
}

}  // namespace cairn
