// File operations Node's fs module lacks, for the extent store: fallocate (punch hole, zero
// range, allocate), lseek SEEK_DATA / SEEK_HOLE, preadv2 / pwritev2 with RWF_NOWAIT (serve a
// page-cache hit on the calling thread, report "would block" otherwise), thread-pool reads and
// writes (the write optionally RWF_DSYNC: data durable in the same hop) and a batched
// fdatasync/fsync of many descriptors in one thread-pool hop.
#ifndef CAIRN_NATIVE_FILE_OPS_H_
#define CAIRN_NATIVE_FILE_OPS_H_

#include <napi.h>

namespace cairn {

// Adds the file functions and the `constants` they take to `exports`.
void InitFileOps(Napi::Env env, Napi::Object exports);

}  // namespace cairn

#endif  // CAIRN_NATIVE_FILE_OPS_H_
