// socket-ops.cc: the NBD connection's side channel to its socket.
//
//   socketDup(fd): number        a second descriptor (close-on-exec) for the same socket
//   socketShutdown(fd): void     shutdown(SHUT_RDWR): wakes any transfer blocked on the socket
//   socketClose(fd): void        close(2) of a descriptor socketDup returned
//   sendAsync(fd, sources[], idleMs): Promise<number>   (the buffers in order, one sendmsg)
//   recvAsync(fd, target, idleMs): Promise<number>
//   recvAheadAsync(fd, target, ahead, idleMs): Promise<{received, ahead}>
//   recvWriteAsync(fd, buffer, from, idleMs, fileFd, position, ahead?): Promise<{received, written, writeError?, ahead}>
//
// Receiving ahead: once the whole target is in (and written, for recvWriteAsync), one
// non-blocking recv takes whatever has arrived since — typically the next request's header —
// into `ahead` (0 bytes when nothing is waiting, the peer ended, or the socket failed: the
// caller's own reads then find out). The caller then parses the next request at once, without
// first resuming its reads on the event loop, waiting a loop turn for the socket and reading it.
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
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "arguments.h"
#include "errno-error.h"
#include "promise-worker.h"

namespace cairn {

namespace {

// The longest a caller may ask a transfer to wait for a silent peer.
constexpr int64_t kIdleMsMax = 60000;
// Most buffers one send gathers.
constexpr uint32_t kSendBuffersMax = 64;

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

// Moves bytes between the socket and one buffer (receive) or several buffers in order (send,
// one sendmsg gathering them all).
class SocketTransferWorker : public PromiseWorker {
 public:
  SocketTransferWorker(Napi::Env env, bool send, int fd, int idle_ms)
      : PromiseWorker(env, send ? "cairn.sendAsync" : "cairn.recvAsync"), send_(send), fd_(fd), idle_ms_(idle_ms) {}

  void AddBuffer(Napi::Value buffer, ByteView view) {
    references_.push_back(Napi::Persistent(buffer.As<Napi::Object>()));
    views_.push_back(view);
    total_ += view.length;
  }

  // Receive only: the first `from` bytes of the buffer are there already; once the rest has
  // arrived, write the whole buffer to `file_fd` at `position` (nothing if it did not arrive).
  void SetFileTarget(size_t from, int file_fd, int64_t position) {
    done_ = from;
    file_fd_ = file_fd;
    position_ = position;
  }

  // Receive only: after the whole target, one non-blocking recv into `buffer` (see the header).
  void SetAhead(Napi::Value buffer, ByteView view) {
    ahead_reference_ = Napi::Persistent(buffer.As<Napi::Object>());
    ahead_ = view;
    has_ahead_ = true;
  }

 protected:
  void Execute() override {
    while (done_ < total_) {
      const ssize_t result = send_ ? SendSome() : recv(fd_, views_[0].data + done_, total_ - done_, MSG_DONTWAIT);
      if (result > 0) {
        done_ += static_cast<size_t>(result);
        continue;
      }
      if (result == 0) return;  // receive: the peer ended its side (or the socket was shut down)
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Fail(errno, send_ ? "sendmsg" : "recv");
        return;
      }
      if (!WaitReady()) return;
    }
    if (file_fd_ >= 0) WriteFile();
    if (has_ahead_) ReceiveAhead();
  }
  Napi::Value Result(Napi::Env env) override {
    if (file_fd_ < 0 && !has_ahead_) return Napi::Number::New(env, static_cast<double>(done_));
    Napi::Object result = Napi::Object::New(env);
    result.Set("received", Napi::Number::New(env, static_cast<double>(done_)));
    if (has_ahead_) result.Set("ahead", Napi::Number::New(env, static_cast<double>(ahead_done_)));
    if (file_fd_ < 0) return result;
    result.Set("written", Napi::Number::New(env, static_cast<double>(written_)));
    if (write_errno_ != 0) result.Set("writeError", ErrnoError(env, write_errno_, "pwrite", "").Value());
    return result;
  }
  Napi::Error MakeError(Napi::Env env, int error_number, const char* syscall) override {
    return ErrnoError(env, error_number, syscall, ExplainSocket(error_number));
  }

 private:
  // The whole buffer to the file; a failure is reported in the result, not as a rejection (the
  // socket is fine: the caller answers the request with the error and keeps the connection).
  void WriteFile() {
    const ByteView& view = views_[0];
    while (written_ < view.length) {
      const ssize_t result = pwrite(file_fd_, view.data + written_, view.length - written_, position_ + static_cast<int64_t>(written_));
      if (result < 0 && errno == EINTR) continue;
      if (result <= 0) {
        write_errno_ = result < 0 ? errno : EIO;
        return;
      }
      written_ += static_cast<size_t>(result);
    }
  }

  // What has arrived after the target, without waiting; nothing on EAGAIN, the end or an error.
  void ReceiveAhead() {
    if (ahead_.length == 0) return;
    ssize_t result;
    do {
      result = recv(fd_, ahead_.data, ahead_.length, MSG_DONTWAIT);
    } while (result < 0 && errno == EINTR);
    if (result > 0) ahead_done_ = static_cast<size_t>(result);
  }

  // One sendmsg of everything not sent yet.
  ssize_t SendSome() {
    std::vector<struct iovec> vector;
    vector.reserve(views_.size());
    size_t skip = done_;
    for (const ByteView& view : views_) {
      if (skip >= view.length) {
        skip -= view.length;
        continue;
      }
      vector.push_back({view.data + skip, view.length - skip});
      skip = 0;
    }
    struct msghdr message = {};
    message.msg_iov = vector.data();
    message.msg_iovlen = vector.size();
    return sendmsg(fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  // Waits until the socket is ready again; false when the peer stayed silent for idle_ms or the
  // socket was shut down (the transfer then ends with what it moved).
  bool WaitReady() {
    struct pollfd entry = {fd_, static_cast<short>(send_ ? POLLOUT : POLLIN), 0};
    for (;;) {
      const int ready = poll(&entry, 1, idle_ms_);
      // POLLHUP/POLLERR count as ready: the next call reports them (0 or an errno) and ends.
      if (ready > 0) return true;
      if (ready == 0) return false;
      if (errno == EINTR) continue;
      Fail(errno, "poll");
      return false;
    }
  }

  bool send_;
  int fd_;
  int idle_ms_;
  std::vector<Napi::ObjectReference> references_;
  std::vector<ByteView> views_;
  size_t total_ = 0;
  size_t done_ = 0;
  int file_fd_ = -1;
  int64_t position_ = 0;
  size_t written_ = 0;
  int write_errno_ = 0;
  Napi::ObjectReference ahead_reference_;
  ByteView ahead_{nullptr, 0};
  bool has_ahead_ = false;
  size_t ahead_done_ = 0;
};

int IdleArgument(const Napi::CallbackInfo& info, size_t index) {
  const int64_t idle_ms = IntegerArgument(info, index, "idleMs", 1);
  if (idle_ms > kIdleMsMax) throw Napi::TypeError::New(info.Env(), "idleMs must be at most 60000");
  return static_cast<int>(idle_ms);
}

// sendAsync(fd, sources: Uint8Array[], idleMs): the buffers go out in order, gathered.
Napi::Value SendAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "sendAsync");
  const int fd = FdArgument(info, 0, "fd");
  if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "sources must be an array of Buffers");
  Napi::Array sources = info[1].As<Napi::Array>();
  if (sources.Length() == 0 || sources.Length() > kSendBuffersMax) {
    throw Napi::TypeError::New(info.Env(), "sources must hold 1 to 64 Buffers");
  }
  const int idle_ms = IdleArgument(info, 2);
  // Each element is read once: the view and the reference kept alive must be of the same buffer.
  std::vector<Napi::Value> buffers;
  std::vector<ByteView> views;
  size_t total = 0;
  for (uint32_t i = 0; i < sources.Length(); i++) {
    buffers.push_back(sources.Get(i));
    views.push_back(BytesValue(info.Env(), buffers.back(), "sources[i]"));
    total += views.back().length;
    if (total > kIoBytesMax) throw Napi::TypeError::New(info.Env(), "sources are longer than one system call transfers");
  }
  auto* worker = new SocketTransferWorker(info.Env(), true, fd, idle_ms);
  for (size_t i = 0; i < buffers.size(); i++) worker->AddBuffer(buffers[i], views[i]);
  return QueueWorker(worker);
}

// recvAsync(fd, target, idleMs): fills target from the socket.
Napi::Value RecvAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "recvAsync");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView view = BytesArgument(info, 1, "target");
  const int idle_ms = IdleArgument(info, 2);
  auto* worker = new SocketTransferWorker(info.Env(), false, fd, idle_ms);
  worker->AddBuffer(info[1], view);
  return QueueWorker(worker);
}

// recvAheadAsync(fd, target, ahead, idleMs): fills target, then receives ahead (see the header).
Napi::Value RecvAheadAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 4, "recvAheadAsync");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView view = BytesArgument(info, 1, "target");
  const ByteView ahead = BytesArgument(info, 2, "ahead");
  const int idle_ms = IdleArgument(info, 3);
  auto* worker = new SocketTransferWorker(info.Env(), false, fd, idle_ms);
  worker->AddBuffer(info[1], view);
  worker->SetAhead(info[2], ahead);
  return QueueWorker(worker);
}

// recvWriteAsync(fd, buffer, from, idleMs, fileFd, position, ahead?): receives buffer[from..]
// from the socket, then writes the whole buffer to the file at position, then receives ahead,
// in one pool call. Resolves {received (bytes of the buffer in place), written, writeError?,
// ahead (only when given)}.
Napi::Value RecvWriteAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 6, "recvWriteAsync");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView view = BytesArgument(info, 1, "buffer");
  const int64_t from = IntegerArgument(info, 2, "from", 0);
  if (static_cast<uint64_t>(from) > view.length) throw Napi::TypeError::New(info.Env(), "from must lie within the buffer");
  const int idle_ms = IdleArgument(info, 3);
  const int file_fd = FdArgument(info, 4, "fileFd");
  const int64_t position = IntegerArgument(info, 5, "position", 0);
  // Every argument is checked before the worker exists: a throw after `new` would leak it.
  const bool has_ahead = info.Length() > 6 && !info[6].IsUndefined();
  const ByteView ahead = has_ahead ? BytesArgument(info, 6, "ahead") : ByteView{nullptr, 0};
  auto* worker = new SocketTransferWorker(info.Env(), false, fd, idle_ms);
  worker->AddBuffer(info[1], view);
  worker->SetFileTarget(static_cast<size_t>(from), file_fd, position);
  if (has_ahead) worker->SetAhead(info[6], ahead);
  return QueueWorker(worker);
}

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
  exports.Set("recvAheadAsync", Napi::Function::New(env, RecvAheadAsync, "recvAheadAsync"));
  exports.Set("recvWriteAsync", Napi::Function::New(env, RecvWriteAsync, "recvWriteAsync"));
}

}  // namespace cairn
