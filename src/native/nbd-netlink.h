// The kernel NBD driver's generic-netlink interface (family "nbd", <linux/nbd-netlink.h>): CONNECT,
// RECONFIGURE, DISCONNECT and STATUS. Plain C++ with no Node-API: every call opens its own netlink
// socket, resolves the family, sends one request, reads the answer and closes the socket, so calls
// on different threads never share state. Calls block (the kernel runs the command inside
// sendmsg, and DISCONNECT waits for the driver's receive threads): run them off the event loop.
//
// Every function returns 0 or an errno value and names the step that failed in *step (a static
// string), so the binding can explain the failure in words.
#ifndef CAIRN_NATIVE_NBD_NETLINK_H_
#define CAIRN_NATIVE_NBD_NETLINK_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cairn {
namespace nbd {

// Steps a failure can be attributed to.
extern const char* const kStepSocket;
extern const char* const kStepResolveFamily;
extern const char* const kStepConnect;
extern const char* const kStepReconfigure;
extern const char* const kStepDisconnect;
extern const char* const kStepStatus;

struct ConnectRequest {
  std::vector<int> socket_fds;
  uint64_t size_bytes = 0;
  uint64_t block_bytes = 0;
  uint64_t server_flags = 0;
  uint64_t client_flags = 0;
  uint64_t io_timeout_seconds = 0;
  uint64_t dead_conn_timeout_seconds = 0;
  std::string backend_id;
  // -1: let the kernel pick the first free device (or create one).
  int64_t index = -1;
};

struct ReconfigureRequest {
  uint32_t index = 0;
  std::string backend_id;
  std::vector<int> socket_fds;
  // Zero means "leave as it is" for each of these.
  uint64_t size_bytes = 0;
  uint64_t io_timeout_seconds = 0;
  uint64_t dead_conn_timeout_seconds = 0;
};

struct DeviceStatus {
  uint32_t index;
  bool connected;
};

// Most devices a STATUS answer may list before the answer is treated as malformed.
constexpr size_t kStatusDevicesMax = 65536;

int Connect(const ConnectRequest& request, uint32_t* index, const char** step);
int Reconfigure(const ReconfigureRequest& request, const char** step);
int Disconnect(uint32_t index, const char** step);
// index < 0: every device the driver has.
int Status(int64_t index, std::vector<DeviceStatus>* devices, const char** step);

}  // namespace nbd
}  // namespace cairn

#endif  // CAIRN_NATIVE_NBD_NETLINK_H_
