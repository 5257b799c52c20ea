/**
 * Goal: MemoryDevice meets the BlockDevice contract, so tests and the simulator can stand it in
 * for real storage.
 *
 * Method: the shared conformance suite (test/suites/block-device-suite.ts); its 1 MiB boundaries
 * are also boundaries of the device's 64 KiB chunks, and its unaligned I/O crosses many more.
 */
import t from 'tap';
import { MemoryDevice } from '../../src/block/memory-device';
import { blockDeviceSuite } from '../suites/block-device-suite';

blockDeviceSuite(t, async (_t, options) => new MemoryDevice(options));
