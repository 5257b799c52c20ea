// The kernel NBD driver's ioctl interface (<linux/nbd.h>), the fallback for kernels without the
// netlink family, plus the block-device calls detach and resize need. Plain C++ with no
// Node-API; every function blocks and returns 0 or an errno value, naming the failed step in
// *step (a static string).
//
// The ioctl device life: Setup (open, SET_BLKSIZE, SET_SIZE_BLOCKS, CLEAR_SOCK, SET_FLAGS,
// SET_TIMEOUT, SET_SOCK for each socket) and Run (DO_IT, which blocks until the device is
// disconnected, then CLEAR_QUE and CLEAR_SOCK) must run on one dedicated thread: the driver
// accepts SET_SOCK only from the task that started the setup, and DO_IT holds its thread for
// the device's whole life.
#ifndef CAIRN_NATIVE_NBD_IOCTL_H_
#define CAIRN_NATIVE_NBD_IOCTL_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cairn {
namespace nbd {

struct IoctlConnectRequest {
  std::string device_path;
  std::vector<int> socket_fds;
  uint64_t size_bytes = 0;
  uint64_t block_bytes = 0;
  uint64_t server_flags = 0;
  uint64_t io_timeout_seconds = 0;
};

// Opens the device and configures it; on success *device_fd is open (pass it to IoctlRun). The
// socket descriptors are closed in every outcome: the driver holds its own references.
int IoctlSetup(const IoctlConnectRequest& request, int* device_fd, const char** step);
// NBD_DO_IT until disconnect, then CLEAR_QUE, CLEAR_SOCK and close(device_fd). 0 after a
// requested disconnect; ETIMEDOUT after a request timed out; another errno if the device failed.
int IoctlRun(int device_fd, const char** step);
// NBD_DISCONNECT then NBD_CLEAR_SOCK from a second descriptor of the device.
int IoctlDisconnect(const std::string& device_path, const char** step);
// NBD_SET_SIZE on a running device: grows it when the driver allows.
int IoctlSetSize(const std::string& device_path, uint64_t size_bytes, const char** step);
// open (O_EXCL when exclusive: fails with EBUSY while the device is mounted) and fsync: the
// device's dirty page cache is written and a FLUSH reaches the server.
int FlushDevice(const std::string& device_path, bool exclusive, const char** step);

}  // namespace nbd
}  // namespace cairn

#endif  // CAIRN_NATIVE_NBD_IOCTL_H_
