/**
 * What the NBD server needs from the rest of Cairn: a resolver that lists and opens exports, and
 * a logger. The server never creates devices itself; the composition root injects a resolver
 * (tests inject one over MemoryDevice).
 *
 * Contract: every handle returned by `open` is released exactly once by the server, when the
 * connection that opened it has closed and none of its device calls is still running (INFO
 * releases its handle right after answering).
 */
import type { BlockDevice } from '../block/block-device';
import type { Logger } from '../observe/logger';

export interface NbdExportHandle {
  /** The canonical export name (sent as NBD_INFO_NAME; '' asks for the default export). */
  readonly name: string;
  readonly description?: string;
  readonly device: BlockDevice;
  /** Serve read-only even if the device can write. */
  readonly readOnly: boolean;
  release(): void;
}

export interface ExportResolver {
  list(): Array<{ name: string; description?: string }>;
  /** '' = default export. Returns undefined when no such export (-> NBD_REP_ERR_UNKNOWN). May throw CairnError (message goes to the client). */
  open(name: string): Promise<NbdExportHandle | undefined>;
}

/** The logging the server does: the four levels of src/observe's Logger. */
export type NbdLogger = Pick<Logger, 'error' | 'warn' | 'info' | 'debug'>;

export const silentNbdLogger: NbdLogger = {
  error: () => {}, warn: () => {}, info: () => {}, debug: () => {},
};
