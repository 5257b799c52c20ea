# Builds build/Release/cairn_native.node (Node-API, C++17, Linux). node-addon-api supplies the
# C++ wrapper headers; C++ exceptions are on so argument errors throw TypeError cleanly.
{
  "targets": [
    {
      "target_name": "cairn_native",
      "sources": [
        "src/native/cairn-native.cc",
        "src/native/arguments.cc",
        "src/native/errno-error.cc",
        "src/native/file-ops.cc",
        "src/native/loop-poll.cc",
        "src/native/nbd-netlink.cc",
        "src/native/nbd-ioctl.cc",
        "src/native/nbd-kernel.cc",
        "src/native/notify.cc",
        "src/native/socket-ops.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++1y", "-std=gnu++14"]
    }
  ]
}
