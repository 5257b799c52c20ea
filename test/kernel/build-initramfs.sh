#!/usr/bin/env bash
# Builds the initramfs of the kernel attach test: busybox, node and the libraries ldd names, the
# built project (dist/src, bin, the native addon, production node_modules), e2fsprogs, the guest
# kernel's nbd.ko and ext4.ko (with dependencies), and test/kernel/guest-init.sh as /init.
#
# Usage: build-initramfs.sh OUT_DIR
#   Writes OUT_DIR/initrd.cpio.gz and OUT_DIR/kernel.version (the kernel to boot with it:
#   /boot/vmlinuz-$(cat OUT_DIR/kernel.version)). Everything it builds stays under OUT_DIR.
# Needs (see .ci/install-kernel-test-tools): linux-image-amd64, busybox-static, cpio, e2fsprogs,
# and a built project (npm install).
set -euo pipefail

out=${1:?usage: build-initramfs.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
root="$out/root"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,proc,sys,dev,tmp,run,mnt,cairn,modules}

# The newest installed Debian kernel with its modules.
kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's#.*/vmlinuz-##' | while read -r v; do
  [ -d "/lib/modules/$v" ] && echo "$v"; done | sort -V | tail -n 1)
if [ -z "$kernel" ]; then
  echo "build-initramfs: no /boot/vmlinuz-* with modules; install linux-image-amd64" >&2
  exit 1
fi
echo "$kernel" > "$out/kernel.version"

# busybox and its applets.
busybox=/bin/busybox
if ldd "$busybox" >/dev/null 2>&1; then
  echo "build-initramfs: $busybox is not static; install busybox-static" >&2
  exit 1
fi
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
ln -sf ../../bin/busybox "$root/usr/bin/env"

# Copies a binary and every library ldd lists for it, keeping their paths.
copy_with_libraries() {
  local binary=$1 target=$2
  mkdir -p "$root$(dirname "$target")"
  cp -L "$binary" "$root$target"
  ldd "$binary" | grep -o '/[^ ]*' | while read -r library; do
    [ -e "$root$library" ] && continue
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
}
copy_with_libraries "$(command -v node)" /usr/bin/node
# Symbols are dead weight in the guest (about 12 MB of node's 95 MB).
command -v strip >/dev/null && strip "$root/usr/bin/node"
for tool in mke2fs e2fsck; do
  copy_with_libraries "$(PATH=/usr/sbin:/sbin:$PATH command -v "$tool")" "/usr/sbin/$tool"
done
ln -sf mke2fs "$root/usr/sbin/mkfs.ext4"
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"

# Kernel modules, in load order (modprobe resolves the dependencies; crc32c is ext4's soft one).
: > "$root/modules/load-order"
for module in crc32c_generic ext4 nbd; do
  modprobe -S "$kernel" --show-depends "$module" | awk '$1 == "insmod" { print $2 }' | while read -r path; do
    name=$(basename "$path")
    if [ ! -e "$root/modules/$name" ]; then
      case "$path" in
        *.ko.xz) xz -dc "$path" > "$root/modules/${name%.xz}"; name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$path" > "$root/modules/${name%.zst}"; name=${name%.zst} ;;
        *) cp "$path" "$root/modules/$name" ;;
      esac
      echo "$name" >> "$root/modules/load-order"
    fi
  done
done

# The project: what `node bin/cairnd` and `node bin/cairn` load at run time.
if [ ! -f "$repo/build/Release/cairn_native.node" ] || [ ! -d "$repo/dist/src" ]; then
  echo "build-initramfs: build the project first (npm install)" >&2
  exit 1
fi
cp "$repo/package.json" "$root/cairn/"
cp -r "$repo/bin" "$root/cairn/bin"
mkdir -p "$root/cairn/dist" "$root/cairn/build/Release"
cp -r "$repo/dist/src" "$root/cairn/dist/src"
find "$root/cairn/dist" -name '*.map' -delete
cp "$repo/build/Release/cairn_native.node" "$root/cairn/build/Release/"
# Top-level packages only: copying one brings its nested node_modules along.
(cd "$repo" && npm ls --omit=dev --all --parseable 2>/dev/null || true) | tail -n +2 | sed "s#^$repo/##" |
  grep -E '^node_modules/(@[^/]+/)?[^/]+$' | sort -u | while read -r relative; do
  case "$relative" in node_modules/node-addon-api) continue ;; esac
  mkdir -p "$root/cairn/$(dirname "$relative")"
  cp -r "$repo/$relative" "$root/cairn/$relative"
done
# Prebuilt addons for other platforms, and sources, are dead weight.
find "$root/cairn/node_modules" -path '*/prebuilds/*' -maxdepth 4 -type d ! -name 'linux-x64*' -prune -exec rm -rf {} + 2>/dev/null || true
rm -rf "$root/cairn/node_modules/classic-level/deps" "$root/cairn/node_modules/classic-level/binding.cc"

install -m 0755 "$repo/test/kernel/guest-init.sh" "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$out/initrd.cpio.gz"
echo "build-initramfs: kernel $kernel, initramfs $(du -h "$out/initrd.cpio.gz" | cut -f1) compressed, $(du -sh "$root" | cut -f1) unpacked"
