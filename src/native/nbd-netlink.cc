#include "nbd-netlink.h"

#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

// Older C library headers predate the backend identifier (Linux 5.14).
#ifndef NBD_ATTR_BACKEND_IDENTIFIER
#define NBD_ATTR_BACKEND_IDENTIFIER 10
#endif

namespace cairn {
namespace nbd {

const char* const kStepSocket = "netlink socket";
const char* const kStepResolveFamily = "genl CTRL_CMD_GETFAMILY nbd";
const char* const kStepConnect = "NBD_CMD_CONNECT";
const char* const kStepReconfigure = "NBD_CMD_RECONFIGURE";
const char* const kStepDisconnect = "NBD_CMD_DISCONNECT";
const char* const kStepStatus = "NBD_CMD_STATUS";

namespace {

// One answer datagram is read into this; a longer one is refused (EMSGSIZE), never truncated.
constexpr size_t kReceiveBytes = 64 * 1024;
// The kernel answers inside our sendmsg; a missing answer within this time is a kernel bug.
constexpr int kReceiveTimeoutSeconds = 120;

// A generic-netlink request under construction: netlink header, genl header, attributes.
class Message {
 public:
  Message(uint16_t family, uint8_t command, uint8_t version) {
    nlmsghdr header{};
    header.nlmsg_type = family;
    header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    Append(&header, sizeof header);
    genlmsghdr genl{};
    genl.cmd = command;
    genl.version = version;
    Append(&genl, sizeof genl);
  }

  void PutU32(uint16_t type, uint32_t value) { PutAttribute(type, &value, sizeof value); }
  void PutU64(uint16_t type, uint64_t value) { PutAttribute(type, &value, sizeof value); }
  // With its terminating NUL, as NLA_STRING attributes are sent by libnl.
  void PutString(uint16_t type, const std::string& value) { PutAttribute(type, value.c_str(), value.size() + 1); }

  size_t BeginNested(uint16_t type) {
    const size_t offset = buffer_.size();
    nlattr attribute{};
    attribute.nla_type = static_cast<uint16_t>(type | NLA_F_NESTED);
    Append(&attribute, sizeof attribute);
    return offset;
  }

  void EndNested(size_t offset) {
    const uint16_t length = static_cast<uint16_t>(buffer_.size() - offset);
    std::memcpy(buffer_.data() + offset + offsetof(nlattr, nla_len), &length, sizeof length);
  }

  // Sets the sequence number and length; the result stays valid until the next Put.
  std::vector<uint8_t>& Finish(uint32_t sequence) {
    nlmsghdr header;
    std::memcpy(&header, buffer_.data(), sizeof header);
    header.nlmsg_len = static_cast<uint32_t>(buffer_.size());
    header.nlmsg_seq = sequence;
    std::memcpy(buffer_.data(), &header, sizeof header);
    return buffer_;
  }

 private:
  void PutAttribute(uint16_t type, const void* data, size_t length) {
    nlattr attribute{};
    attribute.nla_len = static_cast<uint16_t>(NLA_HDRLEN + length);
    attribute.nla_type = type;
    Append(&attribute, sizeof attribute);
    Append(data, length);
    while (buffer_.size() % NLA_ALIGNTO != 0) buffer_.push_back(0);
  }

  void Append(const void* data, size_t length) {
    const uint8_t* bytes = static_cast<const uint8_t*>(data);
    buffer_.insert(buffer_.end(), bytes, bytes + length);
  }

  std::vector<uint8_t> buffer_;
};

// Calls visit(type, payload, length) for each attribute of [data, data + length). Returns
// EPROTO for a malformed attribute, else the first non-zero result of visit, else 0.
template <typename Visit>
int ForEachAttribute(const uint8_t* data, size_t length, Visit visit) {
  size_t offset = 0;
  while (length - offset >= NLA_HDRLEN) {
    nlattr attribute;
    std::memcpy(&attribute, data + offset, sizeof attribute);
    if (attribute.nla_len < NLA_HDRLEN || attribute.nla_len > length - offset) return EPROTO;
    const int result = visit(attribute.nla_type & NLA_TYPE_MASK, data + offset + NLA_HDRLEN,
                             static_cast<size_t>(attribute.nla_len - NLA_HDRLEN));
    if (result != 0) return result;
    const size_t advance = NLA_ALIGN(attribute.nla_len);
    if (advance >= length - offset) break;
    offset += advance;
  }
  return 0;
}

template <typename T>
bool ReadScalar(const uint8_t* payload, size_t length, T* value) {
  if (length < sizeof(T)) return false;
  std::memcpy(value, payload, sizeof(T));
  return true;
}

// A netlink socket for one exchange; closed when it goes out of scope.
class NetlinkSocket {
 public:
  NetlinkSocket() = default;
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;
  ~NetlinkSocket() {
    if (fd_ >= 0) close(fd_);
  }

  int Open() {
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd_ < 0) return errno;
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) < 0) return errno;
    timeval timeout{};
    timeout.tv_sec = kReceiveTimeoutSeconds;
    if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0) return errno;
    return 0;
  }

  // Sends the message and reads answers until the kernel's acknowledgement. Each data message
  // of the answer is handed to on_reply(attributes, length). Returns 0, the kernel's errno,
  // or a local errno (EPROTO for a malformed answer).
  template <typename OnReply>
  int Exchange(Message& message, OnReply on_reply) {
    const uint32_t sequence = ++sequence_;
    std::vector<uint8_t>& request = message.Finish(sequence);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t sent;
    do {
      sent = sendto(fd_, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return errno;
    if (static_cast<size_t>(sent) != request.size()) return EPROTO;

    std::vector<uint8_t> buffer(kReceiveBytes);
    for (;;) {
      ssize_t received;
      do {
        received = recv(fd_, buffer.data(), buffer.size(), MSG_TRUNC);
      } while (received < 0 && errno == EINTR);
      if (received < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
      if (static_cast<size_t>(received) > buffer.size()) return EMSGSIZE;
      size_t remaining = static_cast<size_t>(received);
      const uint8_t* cursor = buffer.data();
      while (remaining >= sizeof(nlmsghdr)) {
        nlmsghdr header;
        std::memcpy(&header, cursor, sizeof header);
        if (header.nlmsg_len < sizeof(nlmsghdr) || header.nlmsg_len > remaining) return EPROTO;
        const uint8_t* body = cursor + NLMSG_HDRLEN;
        const size_t body_length = header.nlmsg_len - NLMSG_HDRLEN;
        if (header.nlmsg_seq == sequence) {
          if (header.nlmsg_type == NLMSG_ERROR) {
            nlmsgerr error;
            if (body_length < sizeof error) return EPROTO;
            std::memcpy(&error, body, sizeof error);
            return -error.error;  // 0 is the acknowledgement
          }
          if (header.nlmsg_type == NLMSG_DONE) return 0;
          if (body_length < GENL_HDRLEN) return EPROTO;
          const int result = on_reply(body + GENL_HDRLEN, body_length - GENL_HDRLEN);
          if (result != 0) return result;
        }
        const size_t advance = NLMSG_ALIGN(header.nlmsg_len);
        if (advance >= remaining) break;
        cursor += advance;
        remaining -= advance;
      }
    }
  }

  // CTRL_CMD_GETFAMILY: the numeric id of the "nbd" family (ENOENT when the driver is absent).
  int ResolveNbdFamily(uint16_t* family) {
    Message message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
    message.PutString(CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME);
    bool found = false;
    const int result = Exchange(message, [&](const uint8_t* attributes, size_t length) {
      return ForEachAttribute(attributes, length, [&](uint16_t type, const uint8_t* payload, size_t payload_length) {
        if (type == CTRL_ATTR_FAMILY_ID) {
          if (!ReadScalar(payload, payload_length, family)) return EPROTO;
          found = true;
        }
        return 0;
      });
    });
    if (result != 0) return result;
    return found ? 0 : ENOENT;
  }

 private:
  int fd_ = -1;
  uint32_t sequence_ = 0;
};

// Opens a socket and resolves the family; on failure *step says which of the two failed.
int Prepare(NetlinkSocket* socket, uint16_t* family, const char** step) {
  int result = socket->Open();
  if (result != 0) {
    *step = kStepSocket;
    return result;
  }
  result = socket->ResolveNbdFamily(family);
  if (result != 0) *step = kStepResolveFamily;
  return result;
}

void PutSockets(Message* message, const std::vector<int>& fds) {
  const size_t sockets = message->BeginNested(NBD_ATTR_SOCKETS);
  for (int fd : fds) {
    const size_t item = message->BeginNested(NBD_SOCK_ITEM);
    message->PutU32(NBD_SOCK_FD, static_cast<uint32_t>(fd));
    message->EndNested(item);
  }
  message->EndNested(sockets);
}

}  // namespace

int Connect(const ConnectRequest& request, uint32_t* index, const char** step) {
  NetlinkSocket socket;
  uint16_t family = 0;
  int result = Prepare(&socket, &family, step);
  if (result != 0) return result;
  Message message(family, NBD_CMD_CONNECT, NBD_GENL_VERSION);
  if (request.index >= 0) message.PutU32(NBD_ATTR_INDEX, static_cast<uint32_t>(request.index));
  message.PutU64(NBD_ATTR_SIZE_BYTES, request.size_bytes);
  message.PutU64(NBD_ATTR_BLOCK_SIZE_BYTES, request.block_bytes);
  message.PutU64(NBD_ATTR_SERVER_FLAGS, request.server_flags);
  message.PutU64(NBD_ATTR_TIMEOUT, request.io_timeout_seconds);
  if (request.dead_conn_timeout_seconds > 0) message.PutU64(NBD_ATTR_DEAD_CONN_TIMEOUT, request.dead_conn_timeout_seconds);
  if (request.client_flags != 0) message.PutU64(NBD_ATTR_CLIENT_FLAGS, request.client_flags);
  if (!request.backend_id.empty()) message.PutString(NBD_ATTR_BACKEND_IDENTIFIER, request.backend_id);
  PutSockets(&message, request.socket_fds);
  bool found = false;
  result = socket.Exchange(message, [&](const uint8_t* attributes, size_t length) {
    return ForEachAttribute(attributes, length, [&](uint16_t type, const uint8_t* payload, size_t payload_length) {
      if (type == NBD_ATTR_INDEX) {
        if (!ReadScalar(payload, payload_length, index)) return EPROTO;
        found = true;
      }
      return 0;
    });
  });
  *step = kStepConnect;
  if (result != 0) return result;
  return found ? 0 : EPROTO;
}

int Reconfigure(const ReconfigureRequest& request, const char** step) {
  NetlinkSocket socket;
  uint16_t family = 0;
  int result = Prepare(&socket, &family, step);
  if (result != 0) return result;
  Message message(family, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION);
  message.PutU32(NBD_ATTR_INDEX, request.index);
  if (!request.backend_id.empty()) message.PutString(NBD_ATTR_BACKEND_IDENTIFIER, request.backend_id);
  if (request.size_bytes > 0) message.PutU64(NBD_ATTR_SIZE_BYTES, request.size_bytes);
  if (request.io_timeout_seconds > 0) message.PutU64(NBD_ATTR_TIMEOUT, request.io_timeout_seconds);
  if (request.dead_conn_timeout_seconds > 0) message.PutU64(NBD_ATTR_DEAD_CONN_TIMEOUT, request.dead_conn_timeout_seconds);
  if (!request.socket_fds.empty()) PutSockets(&message, request.socket_fds);
  result = socket.Exchange(message, [](const uint8_t*, size_t) { return 0; });
  *step = kStepReconfigure;
  return result;
}

int Disconnect(uint32_t index, const char** step) {
  NetlinkSocket socket;
  uint16_t family = 0;
  int result = Prepare(&socket, &family, step);
  if (result != 0) return result;
  Message message(family, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
  message.PutU32(NBD_ATTR_INDEX, index);
  result = socket.Exchange(message, [](const uint8_t*, size_t) { return 0; });
  *step = kStepDisconnect;
  return result;
}

int Status(int64_t index, std::vector<DeviceStatus>* devices, const char** step) {
  NetlinkSocket socket;
  uint16_t family = 0;
  int result = Prepare(&socket, &family, step);
  if (result != 0) return result;
  Message message(family, NBD_CMD_STATUS, NBD_GENL_VERSION);
  if (index >= 0) message.PutU32(NBD_ATTR_INDEX, static_cast<uint32_t>(index));
  result = socket.Exchange(message, [&](const uint8_t* attributes, size_t length) {
    return ForEachAttribute(attributes, length, [&](uint16_t type, const uint8_t* list, size_t list_length) {
      if (type != NBD_ATTR_DEVICE_LIST) return 0;
      return ForEachAttribute(list, list_length, [&](uint16_t item_type, const uint8_t* item, size_t item_length) {
        if (item_type != NBD_DEVICE_ITEM) return 0;
        if (devices->size() >= kStatusDevicesMax) return EMSGSIZE;
        DeviceStatus status{0, false};
        bool has_index = false;
        const int parsed = ForEachAttribute(item, item_length, [&](uint16_t field, const uint8_t* payload, size_t payload_length) {
          if (field == NBD_DEVICE_INDEX) {
            if (!ReadScalar(payload, payload_length, &status.index)) return EPROTO;
            has_index = true;
          } else if (field == NBD_DEVICE_CONNECTED) {
            uint8_t connected = 0;
            if (!ReadScalar(payload, payload_length, &connected)) return EPROTO;
            status.connected = connected != 0;
          }
          return 0;
        });
        if (parsed != 0) return parsed;
        if (!has_index) return EPROTO;
        devices->push_back(status);
        return 0;
      });
    });
  });
  *step = kStepStatus;
  return result;
}

}  // namespace nbd
}  // namespace cairn
