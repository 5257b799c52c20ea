/**
 * The export handle a kernel socket is served with. It wraps a volume's handle from the
 * resolver so that the device can grow under a live attachment: the NBD connection fixes the
 * size it validates against when transmission starts (right for network clients, which learn
 * the size once), but the kernel learns a new size through RECONFIGURE while its sockets stay.
 *
 * So the view reports `volumeBytesMax` as its size and leaves the range check to the volume's
 * own device (BlockDeviceBase.checkRange: CAIRN_OUT_OF_RANGE → NBD EINVAL), which follows the
 * volume's real size. The kernel never sends a request past the size it was given, and that size
 * is never larger than the volume. Everything else passes straight through.
 */
import type { BlockCapabilities, BlockDevice, DirectWrite, Extent, FlushNotice, WriteFlags, ZeroFlags } from '../block/block-device';
import { volumeBytesMax } from '../limits';
import type { NbdExportHandle } from '../nbd/export-resolver';

class GrowableDeviceView implements BlockDevice {
  constructor(private readonly device: BlockDevice) {}

  get sizeBytes(): number {
    return volumeBytesMax;
  }

  get capabilities(): BlockCapabilities {
    return this.device.capabilities;
  }

  read(offset: number, target: Buffer): Promise<void> {
    return this.device.read(offset, target);
  }

  write(offset: number, source: Buffer, flags?: WriteFlags): Promise<void> {
    return this.device.write(offset, source, flags);
  }

  flush(notice?: FlushNotice): Promise<void> {
    return this.device.flush(notice);
  }

  directWrite(offset: number, length: number): DirectWrite | undefined {
    return this.device.directWrite?.(offset, length);
  }

  trim(offset: number, length: number, flags?: WriteFlags): Promise<void> {
    return this.device.trim(offset, length, flags);
  }

  zero(offset: number, length: number, flags?: ZeroFlags): Promise<void> {
    return this.device.zero(offset, length, flags);
  }

  cache(offset: number, length: number): Promise<void> {
    return this.device.cache(offset, length);
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    return this.device.extents(offset, length);
  }
}

/** The handle to pass to serveTransmission for a kernel socket; releasing it releases `handle`. */
export function kernelExportHandle(handle: NbdExportHandle, readOnly: boolean): NbdExportHandle {
  return {
    name: handle.name,
    ...(handle.description === undefined ? {} : { description: handle.description }),
    device: new GrowableDeviceView(handle.device),
    readOnly: readOnly || handle.readOnly,
    release: () => handle.release(),
  };
}
