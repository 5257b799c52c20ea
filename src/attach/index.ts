/**
 * Public surface of kernel attach: the manager the daemon composes, the sysfs view it reads,
 * the records it keeps, and its policy defaults (unit tests use fake-kernel.ts directly).
 */
export { AttachManager } from './attach-manager';
export type { AttachableVolume, AttachManagerOptions, AttachmentState, AttachVolumeSource } from './attach-manager';
export { AttachmentStore, attachmentsMax } from './attachment-store';
export type { AttachMethod, AttachmentRecord } from './attachment-store';
export { attachDefaults, noNbdDriverMessage } from './attach-policy';
export { LinuxNbdSysfs } from './nbd-sysfs';
export type { NbdSysfs } from './nbd-sysfs';
