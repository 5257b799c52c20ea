#include "notify.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errno-error.h"

namespace cairn {

namespace {

// systemd reads notifications of up to this many bytes; ours are a few dozen.
constexpr size_t kMessageBytesMax = 4096;

std::string Explain(int error_number) {
  switch (error_number) {
    case ENOENT:
    case ECONNREFUSED: return "systemd's notify socket is gone (is the service manager still running?)";
    case EACCES:
    case EPERM: return "no permission to write to systemd's notify socket";
    case EAGAIN: return "systemd's notify socket is full";
    default: return "";
  }
}

// sdNotify(socketPath, message): undefined. Throws a TypeError for a bad path or message and an
// errno Error (code, errno, syscall) when the datagram cannot be sent.
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    throw Napi::TypeError::New(env, "sdNotify expects a socket path and a message (strings)");
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const std::string message = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const bool abstract = !path.empty() && path[0] == '@';
  if (path.size() < 2 || path.size() >= sizeof address.sun_path || (!abstract && path[0] != '/')) {
    throw Napi::TypeError::New(env, "socketPath must be an absolute path or an @abstract name shorter than 108 bytes");
  }
  if (path.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "socketPath must not contain NUL");
  if (message.empty() || message.size() > kMessageBytesMax) {
    throw Napi::TypeError::New(env, "message must hold 1 to 4096 bytes");
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  if (abstract) address.sun_path[0] = '\0';
  // An abstract name's length is exact; a path's includes its terminating NUL.
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket", Explain(errno));
  ssize_t sent;
  do {
    sent = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  const int error_number = sent < 0 ? errno : 0;
  close(fd);
  if (error_number != 0) throw ErrnoError(env, error_number, "sendto", Explain(error_number));
  return env.Undefined();
}

}  // namespace

void InitNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
}

}  // namespace cairn
