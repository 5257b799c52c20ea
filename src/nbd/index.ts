/**
 * Public surface of the NBD server: the server and its kernel-path entry, the resolver contract,
 * and the helpers that let an attacher advertise the same flags the server validates against.
 */
export { NbdServer, serveTransmission, shutdownDeadlineMsDefault } from './server';
export type { NbdServerOptions, NbdServerStatus, TransmissionOptions } from './server';
export { NbdConnection, defaultConnectionLimits } from './connection';
export type { ConnectionLimits, ConnectionPhase } from './connection';
export { silentNbdLogger } from './export-resolver';
export type { ExportResolver, NbdExportHandle, NbdLogger } from './export-resolver';
export { blockSizesFor, transmissionFlagsFor } from './validate';
export { TransmissionFlag } from './protocol';
