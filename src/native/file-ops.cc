#include "file-ops.h"

#ifndef __linux__
#error "Cairn's native addon uses Linux system calls (fallocate, preadv2, SEEK_DATA); build it on Linux"
#endif

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "arguments.h"
#include "errno-error.h"
#include "promise-worker.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

// cachestat(2) arrived in Linux 6.5; older C library headers lack its number and structures.
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

namespace cairn {

namespace {

struct CachestatRange {
  uint64_t offset;
  uint64_t length;
};

struct Cachestat {
  uint64_t cache;
  uint64_t dirty;
  uint64_t writeback;
  uint64_t evicted;
  uint64_t recently_evicted;
};

// Returned by the *Nowait calls when serving the request would have to wait for the disk.
constexpr int kWouldBlock = -1;
// Returned by seekData / seekHole when no data (or hole) lies at or past the offset (ENXIO).
constexpr int kNotFound = -1;
// Most descriptors one syncMany call accepts in each list.
constexpr uint32_t kSyncFdsMax = 65536;

// The fallocate modes the addon accepts; anything else is refused before the call.
constexpr int kModeAllocate = 0;
constexpr int kModeAllocateKeepSize = FALLOC_FL_KEEP_SIZE;
constexpr int kModePunchHole = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
constexpr int kModeZeroRange = FALLOC_FL_ZERO_RANGE;
constexpr int kModeZeroRangeKeepSize = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

bool IsAllowedFallocateMode(int64_t mode) {
  return mode == kModeAllocate || mode == kModeAllocateKeepSize || mode == kModePunchHole ||
         mode == kModeZeroRange || mode == kModeZeroRangeKeepSize;
}

const char* FallocateWhat(int mode) {
  if (mode == kModePunchHole) return "punching holes";
  if (mode == kModeZeroRange || mode == kModeZeroRangeKeepSize) return "zeroing a range in place (FALLOC_FL_ZERO_RANGE)";
  return "preallocating space";
}

// What an errno means for the call that returned it, in words an operator can act on.
std::string Explain(const std::string& syscall, int error_number, int fallocate_mode) {
  switch (error_number) {
    case EBADF: return "the file descriptor is not open, or not open for this kind of access";
    case EIO: return "the drive reported an I/O error";
    case ENOSPC: return "the drive has no free space left";
    case EDQUOT: return "the disk quota of this user is exhausted";
    case EROFS: return "the filesystem is mounted read-only";
    case EISDIR: return "the file descriptor refers to a directory";
    case ESPIPE:
    case ENODEV: return "the file descriptor does not refer to a regular file";
    case EFBIG: return "the range ends past the largest file this filesystem allows";
    case EINTR: return "the call was interrupted by a signal";
    default: break;
  }
  if (syscall == "fallocate") {
    if (error_number == EOPNOTSUPP) {
      return std::string("this filesystem does not support ") + FallocateWhat(fallocate_mode) +
             ": put the drive on ext4, xfs or btrfs";
    }
    if (error_number == ENOSYS) return "this kernel does not implement fallocate";
    if (error_number == EINVAL) return "the filesystem rejected this fallocate mode or range";
  }
  if (syscall == "lseek" && error_number == EINVAL) {
    return "this kernel or filesystem does not support SEEK_DATA / SEEK_HOLE";
  }
  if (syscall == "preadv2" || syscall == "pwritev2") {
    if (error_number == EOPNOTSUPP) {
      return std::string("this filesystem does not support non-blocking (RWF_NOWAIT) ") +
             (syscall == "preadv2" ? "reads" : "writes") + " of cached pages";
    }
    if (error_number == ENOSYS) return "this kernel lacks preadv2 / pwritev2 (Linux 4.6 or newer is needed)";
    if (error_number == EINVAL) return "the kernel rejected the flags or the range of this call";
  }
  if (syscall == "cachestat" && (error_number == ENOSYS || error_number == EOPNOTSUPP)) {
    return "this kernel lacks cachestat (Linux 6.5 or newer is needed)";
  }
  if ((syscall == "fdatasync" || syscall == "fsync") && error_number == EINVAL) {
    return "this file does not support synchronisation to stable storage";
  }
  return "";
}

Napi::Error SyscallError(Napi::Env env, int error_number, const char* syscall, int fallocate_mode = 0) {
  return ErrnoError(env, error_number, syscall, Explain(syscall, error_number, fallocate_mode));
}

int FallocateModeArgument(const Napi::CallbackInfo& info, size_t index) {
  const int64_t mode = IntegerArgument(info, index, "mode", 0);
  if (!IsAllowedFallocateMode(mode)) {
    throw Napi::TypeError::New(info.Env(), "mode must be one of the fallocate modes in constants");
  }
  return static_cast<int>(mode);
}

int RetryFallocate(int fd, int mode, int64_t offset, int64_t length) {
  int result;
  do {
    result = fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (result < 0 && errno == EINTR);
  return result < 0 ? errno : 0;
}

ssize_t RetryPreadv2(int fd, uint8_t* data, size_t length, int64_t position, int flags) {
  struct iovec vector = {data, length};
  ssize_t result;
  do {
    result = preadv2(fd, &vector, 1, static_cast<off_t>(position), flags);
  } while (result < 0 && errno == EINTR);
  return result;
}

ssize_t RetryPwritev2(int fd, const uint8_t* data, size_t length, int64_t position, int flags) {
  struct iovec vector = {const_cast<uint8_t*>(data), length};
  ssize_t result;
  do {
    result = pwritev2(fd, &vector, 1, static_cast<off_t>(position), flags);
  } while (result < 0 && errno == EINTR);
  return result;
}

// --- synchronous calls -------------------------------------------------------------------------

// fallocate(fd, mode, offset, length): undefined. Throws on failure.
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 4, "fallocate");
  const int fd = FdArgument(info, 0, "fd");
  const int mode = FallocateModeArgument(info, 1);
  const int64_t offset = IntegerArgument(info, 2, "offset", 0);
  const int64_t length = IntegerArgument(info, 3, "length", 1);
  const int error_number = RetryFallocate(fd, mode, offset, length);
  if (error_number != 0) throw SyscallError(info.Env(), error_number, "fallocate", mode);
  return info.Env().Undefined();
}

Napi::Value Seek(const Napi::CallbackInfo& info, int whence, const char* function) {
  RequireArgumentCount(info, 2, function);
  const int fd = FdArgument(info, 0, "fd");
  const int64_t offset = IntegerArgument(info, 1, "offset", 0);
  const off_t result = lseek(fd, static_cast<off_t>(offset), whence);
  if (result < 0) {
    if (errno == ENXIO) return Napi::Number::New(info.Env(), kNotFound);
    throw SyscallError(info.Env(), errno, "lseek");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(result));
}

// seekData(fd, offset): the first data offset at or after offset, or -1 when only a hole follows.
Napi::Value SeekData(const Napi::CallbackInfo& info) { return Seek(info, SEEK_DATA, "seekData"); }
// seekHole(fd, offset): the first hole offset at or after offset (end of file counts as a hole),
// or -1 when offset lies at or past the end of the file.
Napi::Value SeekHole(const Napi::CallbackInfo& info) { return Seek(info, SEEK_HOLE, "seekHole"); }

// preadNowait(fd, target, position): bytes read (short when only part is cached, 0 at end of
// file), or -1 when nothing could be read without waiting for the disk.
Napi::Value PreadNowait(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "preadNowait");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView target = BytesArgument(info, 1, "target");
  const int64_t position = IntegerArgument(info, 2, "position", 0);
  if (target.length == 0) return Napi::Number::New(info.Env(), 0);
  const ssize_t result = RetryPreadv2(fd, target.data, target.length, position, RWF_NOWAIT);
  if (result < 0) {
    if (errno == EAGAIN) return Napi::Number::New(info.Env(), kWouldBlock);
    throw SyscallError(info.Env(), errno, "preadv2");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(result));
}

// pwriteNowait(fd, source, position): bytes written, or -1 when writing would have to wait.
// Throws EOPNOTSUPP on filesystems without non-blocking buffered writes (ext4 before 6.x).
Napi::Value PwriteNowait(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "pwriteNowait");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView source = BytesArgument(info, 1, "source");
  const int64_t position = IntegerArgument(info, 2, "position", 0);
  if (source.length == 0) return Napi::Number::New(info.Env(), 0);
  const ssize_t result = RetryPwritev2(fd, source.data, source.length, position, RWF_NOWAIT);
  if (result < 0) {
    if (errno == EAGAIN) return Napi::Number::New(info.Env(), kWouldBlock);
    throw SyscallError(info.Env(), errno, "pwritev2");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(result));
}

// pwrite(fd, source, position): bytes written, blocking the calling thread (page cache write).
Napi::Value PwriteBlocking(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "pwrite");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView source = BytesArgument(info, 1, "source");
  const int64_t position = IntegerArgument(info, 2, "position", 0);
  if (source.length == 0) return Napi::Number::New(info.Env(), 0);
  const ssize_t result = RetryPwritev2(fd, source.data, source.length, position, 0);
  if (result < 0) throw SyscallError(info.Env(), errno, "pwritev2");
  return Napi::Number::New(info.Env(), static_cast<double>(result));
}

// fadvise(fd, offset, length, advice): undefined. advice is POSIX_FADV_WILLNEED (start reading
// the range into the page cache without waiting) or POSIX_FADV_DONTNEED (drop its clean pages).
// length 0 means "to the end of the file".
Napi::Value Fadvise(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 4, "fadvise");
  const int fd = FdArgument(info, 0, "fd");
  const int64_t offset = IntegerArgument(info, 1, "offset", 0);
  const int64_t length = IntegerArgument(info, 2, "length", 0);
  const int64_t advice = IntegerArgument(info, 3, "advice", 0);
  if (advice != POSIX_FADV_WILLNEED && advice != POSIX_FADV_DONTNEED) {
    throw Napi::TypeError::New(info.Env(), "advice must be POSIX_FADV_WILLNEED or POSIX_FADV_DONTNEED from constants");
  }
  // posix_fadvise returns the error number instead of setting errno.
  const int error_number = posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), static_cast<int>(advice));
  if (error_number != 0) throw SyscallError(info.Env(), error_number, "posix_fadvise");
  return info.Env().Undefined();
}

// cachestat(fd, offset, length): page-cache state of the range in pages ({ cachedPages,
// dirtyPages, writebackPages, evictedPages, recentlyEvictedPages }); length 0 means "to the end
// of the file". Lets tests and diagnostics see whether written data still waits in memory.
Napi::Value CachestatCall(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "cachestat");
  const int fd = FdArgument(info, 0, "fd");
  const int64_t offset = IntegerArgument(info, 1, "offset", 0);
  const int64_t length = IntegerArgument(info, 2, "length", 0);
  CachestatRange range = {static_cast<uint64_t>(offset), static_cast<uint64_t>(length)};
  Cachestat stat = {};
  if (syscall(__NR_cachestat, fd, &range, &stat, 0) < 0) throw SyscallError(info.Env(), errno, "cachestat");
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("cachedPages", Napi::Number::New(info.Env(), static_cast<double>(stat.cache)));
  result.Set("dirtyPages", Napi::Number::New(info.Env(), static_cast<double>(stat.dirty)));
  result.Set("writebackPages", Napi::Number::New(info.Env(), static_cast<double>(stat.writeback)));
  result.Set("evictedPages", Napi::Number::New(info.Env(), static_cast<double>(stat.evicted)));
  result.Set("recentlyEvictedPages", Napi::Number::New(info.Env(), static_cast<double>(stat.recently_evicted)));
  return result;
}

// --- thread-pool calls ------------------------------------------------------------------------

// File-call workers: failures become SyscallError, which explains fallocate modes by name.
class FileWorker : public PromiseWorker {
 public:
  explicit FileWorker(Napi::Env env, const char* name) : PromiseWorker(env, name) {}

 protected:
  Napi::Error MakeError(Napi::Env env, int error_number, const char* syscall) override {
    return SyscallError(env, error_number, syscall, fallocate_mode_);
  }
  int fallocate_mode_ = 0;
};

class FallocateWorker : public FileWorker {
 public:
  FallocateWorker(Napi::Env env, int fd, int mode, int64_t offset, int64_t length)
      : FileWorker(env, "cairn.fallocate"), fd_(fd), mode_(mode), offset_(offset), length_(length) {
    fallocate_mode_ = mode;
  }

 protected:
  void Execute() override {
    const int error_number = RetryFallocate(fd_, mode_, offset_, length_);
    if (error_number != 0) Fail(error_number, "fallocate");
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  int fd_;
  int mode_;
  int64_t offset_;
  int64_t length_;
};

// Reads until the view is full or end of file; writes until everything is written. The buffer
// is referenced until the worker completes so the collector cannot free it under the thread.
class TransferWorker : public FileWorker {
 public:
  TransferWorker(Napi::Env env, bool write, int fd, Napi::Value buffer, ByteView view, int64_t position, int flags)
      : FileWorker(env, write ? "cairn.pwrite" : "cairn.pread"),
        write_(write), fd_(fd), buffer_(Napi::Persistent(buffer.As<Napi::Object>())), view_(view),
        position_(position), flags_(flags) {}

 protected:
  void Execute() override {
    while (done_ < view_.length) {
      const size_t remaining = view_.length - done_;
      const int64_t at = position_ + static_cast<int64_t>(done_);
      const ssize_t result = write_ ? RetryPwritev2(fd_, view_.data + done_, remaining, at, flags_)
                                    : RetryPreadv2(fd_, view_.data + done_, remaining, at, flags_);
      if (result < 0) {
        Fail(errno, write_ ? "pwritev2" : "preadv2");
        return;
      }
      if (result == 0) {
        // End of file for a read; a write that makes no progress would loop forever.
        if (write_) Fail(EIO, "pwritev2");
        return;
      }
      done_ += static_cast<size_t>(result);
    }
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(done_)); }

 private:
  bool write_;
  int fd_;
  Napi::ObjectReference buffer_;
  ByteView view_;
  int64_t position_;
  int flags_;
  size_t done_ = 0;
};

// fdatasync every data descriptor, then fsync every metadata descriptor (directories), one after
// another on one pool thread. Every descriptor is synced even after a failure; the first failure
// rejects the promise and names its descriptor in `fd`.
class SyncManyWorker : public FileWorker {
 public:
  SyncManyWorker(Napi::Env env, std::vector<int> data_fds, std::vector<int> metadata_fds)
      : FileWorker(env, "cairn.syncMany"), data_fds_(std::move(data_fds)), metadata_fds_(std::move(metadata_fds)) {}

  // After every sync succeeded, send `view` on the socket `fd` once, without waiting.
  void SetNotice(int fd, Napi::Value buffer, ByteView view) {
    notice_fd_ = fd;
    notice_buffer_ = Napi::Persistent(buffer.As<Napi::Object>());
    notice_view_ = view;
  }

 protected:
  void Execute() override {
    // Start writeback of every file before waiting on any: the disk sees all the data at once
    // and the first fdatasync's journal commit covers the block allocations of all of them, so
    // the later ones mostly find their work done. Failures here are ignored: fdatasync reports.
    if (data_fds_.size() > 1) {
      for (int fd : data_fds_) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    for (int fd : data_fds_) Sync(fd, true);
    for (int fd : metadata_fds_) Sync(fd, false);
    if (failed_fd_ >= 0 || notice_fd_ < 0 || notice_view_.length == 0) return;
    ssize_t sent;
    do {
      sent = send(notice_fd_, notice_view_.data, notice_view_.length, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    // No room, or the peer is gone: the caller sends it (or finds the connection closed).
    if (sent > 0) notice_sent_ = static_cast<size_t>(sent);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(notice_sent_)); }
  void Annotate(Napi::Error& error) override { error.Set("fd", Napi::Number::New(Env(), failed_fd_)); }

 private:
  void Sync(int fd, bool data_only) {
    int result;
    do {
      result = data_only ? fdatasync(fd) : fsync(fd);
    } while (result < 0 && errno == EINTR);
    if (result < 0 && failed_fd_ < 0) {
      failed_fd_ = fd;
      Fail(errno, data_only ? "fdatasync" : "fsync");
    }
  }
  std::vector<int> data_fds_;
  std::vector<int> metadata_fds_;
  int failed_fd_ = -1;
  int notice_fd_ = -1;
  Napi::ObjectReference notice_buffer_;
  ByteView notice_view_ = {nullptr, 0};
  size_t notice_sent_ = 0;
};


// fallocateAsync(fd, mode, offset, length): Promise<void>, the call runs on the thread pool.
Napi::Value FallocateAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 4, "fallocateAsync");
  const int fd = FdArgument(info, 0, "fd");
  const int mode = FallocateModeArgument(info, 1);
  const int64_t offset = IntegerArgument(info, 2, "offset", 0);
  const int64_t length = IntegerArgument(info, 3, "length", 1);
  return QueueWorker(new FallocateWorker(info.Env(), fd, mode, offset, length));
}

// preadAsync(fd, target, position): Promise<bytes read>; fewer than target.length only at EOF.
Napi::Value PreadAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 3, "preadAsync");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView target = BytesArgument(info, 1, "target");
  const int64_t position = IntegerArgument(info, 2, "position", 0);
  return QueueWorker(new TransferWorker(info.Env(), false, fd, info[1], target, position, 0));
}

// pwriteAsync(fd, source, position, dsync): Promise<bytes written> (always source.length).
// With dsync the data and the metadata needed to read it back are durable when it resolves
// (RWF_DSYNC: one pool hop instead of a write hop plus an fdatasync hop).
Napi::Value PwriteAsync(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 4, "pwriteAsync");
  const int fd = FdArgument(info, 0, "fd");
  const ByteView source = BytesArgument(info, 1, "source");
  const int64_t position = IntegerArgument(info, 2, "position", 0);
  const bool dsync = BooleanArgument(info, 3, "dsync");
  return QueueWorker(new TransferWorker(info.Env(), true, fd, info[1], source, position, dsync ? RWF_DSYNC : 0));
}

std::vector<int> FdListArgument(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value value = info[index];
  if (!value.IsArray()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an array of file descriptors");
  Napi::Array array = value.As<Napi::Array>();
  const uint32_t length = array.Length();
  if (length > kSyncFdsMax) throw Napi::TypeError::New(info.Env(), std::string(name) + " holds too many descriptors");
  std::vector<int> fds;
  fds.reserve(length);
  for (uint32_t i = 0; i < length; i++) fds.push_back(FdValue(info.Env(), array.Get(i), std::string(name) + "[i]"));
  return fds;
}

// syncMany(dataFds, metadataFds[, notice {fd, bytes}]): Promise<bytes of the notice sent>;
// see SyncManyWorker.
Napi::Value SyncMany(const Napi::CallbackInfo& info) {
  RequireArgumentCount(info, 2, "syncMany");
  std::vector<int> data_fds = FdListArgument(info, 0, "dataFds");
  std::vector<int> metadata_fds = FdListArgument(info, 1, "metadataFds");
  const bool has_notice = info.Length() > 2 && !info[2].IsUndefined();
  int notice_fd = -1;
  Napi::Value notice_bytes;  // read once: the view and the reference must be of the same buffer
  ByteView notice_view = {nullptr, 0};
  if (has_notice) {
    if (!info[2].IsObject()) throw Napi::TypeError::New(info.Env(), "notice must be an object {fd, bytes}");
    Napi::Object notice = info[2].As<Napi::Object>();
    notice_fd = FdValue(info.Env(), notice.Get("fd"), "notice.fd");
    notice_bytes = notice.Get("bytes");
    notice_view = BytesValue(info.Env(), notice_bytes, "notice.bytes");
  }
  auto* worker = new SyncManyWorker(info.Env(), std::move(data_fds), std::move(metadata_fds));
  if (has_notice) worker->SetNotice(notice_fd, notice_bytes, notice_view);
  return QueueWorker(worker);
}

}  // namespace

void InitFileOps(Napi::Env env, Napi::Object exports) {
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("FALLOC_FL_KEEP_SIZE", Napi::Number::New(env, FALLOC_FL_KEEP_SIZE));
  constants.Set("FALLOC_FL_PUNCH_HOLE", Napi::Number::New(env, FALLOC_FL_PUNCH_HOLE));
  constants.Set("FALLOC_FL_ZERO_RANGE", Napi::Number::New(env, FALLOC_FL_ZERO_RANGE));
  constants.Set("POSIX_FADV_WILLNEED", Napi::Number::New(env, POSIX_FADV_WILLNEED));
  constants.Set("POSIX_FADV_DONTNEED", Napi::Number::New(env, POSIX_FADV_DONTNEED));
  constants.Set("WOULD_BLOCK", Napi::Number::New(env, kWouldBlock));
  constants.Set("NOT_FOUND", Napi::Number::New(env, kNotFound));
  constants.Freeze();
  exports.Set("constants", constants);
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("fallocateAsync", Napi::Function::New(env, FallocateAsync, "fallocateAsync"));
  exports.Set("seekData", Napi::Function::New(env, SeekData, "seekData"));
  exports.Set("seekHole", Napi::Function::New(env, SeekHole, "seekHole"));
  exports.Set("preadNowait", Napi::Function::New(env, PreadNowait, "preadNowait"));
  exports.Set("pwriteNowait", Napi::Function::New(env, PwriteNowait, "pwriteNowait"));
  exports.Set("pwrite", Napi::Function::New(env, PwriteBlocking, "pwrite"));
  exports.Set("fadvise", Napi::Function::New(env, Fadvise, "fadvise"));
  exports.Set("cachestat", Napi::Function::New(env, CachestatCall, "cachestat"));
  exports.Set("preadAsync", Napi::Function::New(env, PreadAsync, "preadAsync"));
  exports.Set("pwriteAsync", Napi::Function::New(env, PwriteAsync, "pwriteAsync"));
  exports.Set("syncMany", Napi::Function::New(env, SyncMany, "syncMany"));
}

}  // namespace cairn
