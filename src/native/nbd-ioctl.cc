#include "nbd-ioctl.h"

#include <fcntl.h>
#include <linux/nbd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace cairn {
namespace nbd {

namespace {

int OpenDevice(const std::string& path, int flags, int* fd) {
  do {
    *fd = open(path.c_str(), flags | O_CLOEXEC);
  } while (*fd < 0 && errno == EINTR);
  return *fd < 0 ? errno : 0;
}

// The driver's ioctls take their argument by value.
int Control(int fd, unsigned long request, unsigned long argument) {
  int result;
  do {
    result = ioctl(fd, request, argument);
  } while (result < 0 && errno == EINTR);
  return result < 0 ? errno : 0;
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

}  // namespace

int IoctlSetup(const IoctlConnectRequest& request, int* device_fd, const char** step) {
  *device_fd = -1;
  int fd = -1;
  int result = OpenDevice(request.device_path, O_RDWR, &fd);
  if (result != 0) {
    *step = "open";
    CloseAll(request.socket_fds);
    return result;
  }
  struct Step {
    const char* name;
    unsigned long request;
    unsigned long argument;
  };
  const Step steps[] = {
      {"ioctl NBD_SET_BLKSIZE", NBD_SET_BLKSIZE, static_cast<unsigned long>(request.block_bytes)},
      {"ioctl NBD_SET_SIZE_BLOCKS", NBD_SET_SIZE_BLOCKS, static_cast<unsigned long>(request.size_bytes / request.block_bytes)},
      {"ioctl NBD_CLEAR_SOCK", NBD_CLEAR_SOCK, 0},
      {"ioctl NBD_SET_FLAGS", NBD_SET_FLAGS, static_cast<unsigned long>(request.server_flags)},
      {"ioctl NBD_SET_TIMEOUT", NBD_SET_TIMEOUT, static_cast<unsigned long>(request.io_timeout_seconds)},
  };
  for (const Step& each : steps) {
    result = Control(fd, each.request, each.argument);
    if (result != 0) {
      *step = each.name;
      break;
    }
  }
  if (result == 0) {
    for (int socket_fd : request.socket_fds) {
      result = Control(fd, NBD_SET_SOCK, static_cast<unsigned long>(socket_fd));
      if (result != 0) {
        *step = "ioctl NBD_SET_SOCK";
        break;
      }
    }
  }
  CloseAll(request.socket_fds);
  if (result != 0) {
    // Drop what was configured (and the driver's configuration reference) before giving up.
    Control(fd, NBD_CLEAR_SOCK, 0);
    close(fd);
    return result;
  }
  *device_fd = fd;
  return 0;
}

int IoctlRun(int device_fd, const char** step) {
  // DO_IT sleeps interruptibly: a signal would make the driver shut the device down, so it is
  // not retried on EINTR (the calling thread blocks every signal instead).
  int result = ioctl(device_fd, NBD_DO_IT) < 0 ? errno : 0;
  *step = "ioctl NBD_DO_IT";
  Control(device_fd, NBD_CLEAR_QUE, 0);
  Control(device_fd, NBD_CLEAR_SOCK, 0);
  close(device_fd);
  return result;
}

int IoctlDisconnect(const std::string& device_path, const char** step) {
  int fd = -1;
  int result = OpenDevice(device_path, O_RDWR, &fd);
  if (result != 0) {
    *step = "open";
    return result;
  }
  result = Control(fd, NBD_DISCONNECT, 0);
  *step = "ioctl NBD_DISCONNECT";
  if (result == 0) {
    result = Control(fd, NBD_CLEAR_SOCK, 0);
    *step = "ioctl NBD_CLEAR_SOCK";
  }
  close(fd);
  return result;
}

int IoctlSetSize(const std::string& device_path, uint64_t size_bytes, const char** step) {
  int fd = -1;
  int result = OpenDevice(device_path, O_RDWR, &fd);
  if (result != 0) {
    *step = "open";
    return result;
  }
  result = Control(fd, NBD_SET_SIZE, static_cast<unsigned long>(size_bytes));
  *step = "ioctl NBD_SET_SIZE";
  close(fd);
  return result;
}

int FlushDevice(const std::string& device_path, bool exclusive, const char** step) {
  int fd = -1;
  int result = OpenDevice(device_path, O_RDONLY | (exclusive ? O_EXCL : 0), &fd);
  if (result != 0) {
    *step = "open";
    return result;
  }
  do {
    result = fsync(fd) < 0 ? errno : 0;
  } while (result == EINTR);
  *step = "fsync";
  close(fd);
  return result;
}

}  // namespace nbd
}  // namespace cairn
