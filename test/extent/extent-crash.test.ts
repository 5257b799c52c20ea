/**
 * Goal: a write acknowledged as durable (FUA, or write then flush) survives the death of the
 * process that wrote it: after SIGKILL, a fresh store on the same drive reads back exactly the
 * acknowledged bytes.
 *
 * Method: a child process (fixtures/crash-writer.ts) writes records and prints "ack N" after
 * each acknowledgement; the parent kills it with SIGKILL right after the 40th ack (the child is
 * then mid-way through later writes, with unflushed noise in the page cache), reopens the
 * drive and checks every acknowledged record. SIGKILL cannot drop the page cache, so power
 * loss is covered by the durability-structure tests (which files are synced, cachestat shows
 * no dirty pages); this test covers everything on disk being found again by a new process:
 * file naming, sizing, the layout record and the file index rebuilt from the directory, for
 * both layouts: segment files (the default) and one file per extent.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ExtentStore, segmentBytesDefault } from '../../src/extent/extent-store';
import { crashRecord, crashVolume } from './fixtures/crash-records';
import { tempDrive } from './fixtures/extent-fixtures';

const acksBeforeKill = 40;

type Layout = 'segments' | 'per-extent';

async function runAndKill(drivePath: string, mode: 'fua' | 'flush', layout: Layout): Promise<number> {
  const loader = process.execArgv.filter((argument) => argument.includes('@tapjs/typescript'));
  const child = spawn(process.execPath, [...loader, path.join(__dirname, 'fixtures', 'crash-writer.ts'), drivePath, mode, layout],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  return new Promise<number>((resolve, reject) => {
    let acked = -1;
    let buffered = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the writer acknowledged only ${acked + 1} records in time: ${stderr}`));
    }, 60_000);
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const match = /^ack (\d+)$/.exec(line);
        if (match === null) continue;
        acked = Number(match[1]);
        if (acked + 1 === acksBeforeKill) child.kill('SIGKILL');
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && acked + 1 >= acksBeforeKill) resolve(acked);
      else reject(new Error(`the writer exited (code ${code}, signal ${signal}) after ${acked + 1} acks: ${stderr}`));
    });
  });
}

for (const layout of ['segments', 'per-extent'] as const) for (const mode of ['fua', 'flush'] as const) {
  void t.test(`every record acknowledged by ${mode === 'fua' ? 'a FUA write' : 'write + flush'} reads back after SIGKILL (${layout})`, async (t) => {
    const drivePath = tempDrive(t);
    const lastAcked = await runAndKill(drivePath, mode, layout);
    t.ok(lastAcked >= acksBeforeKill - 1, `${lastAcked + 1} records acknowledged`);
    const store = await ExtentStore.open({ drivePath });
    t.teardown(() => store.close());
    const volume = await store.openVolume(crashVolume);
    t.equal(volume.segmentBytes, layout === 'segments' ? segmentBytesDefault : crashVolume.extentBytes, 'the layout is found from its record');
    let intact = 0;
    for (let record = 0; record <= lastAcked; record++) {
      const { index, offsetInExtent, data } = crashRecord(record);
      const back = Buffer.alloc(data.length);
      await volume.read(index, offsetInExtent, back);
      if (back.equals(data)) intact++;
      else t.fail(`record ${record} (extent ${index} offset ${offsetInExtent}) was acknowledged but reads back differently`);
    }
    t.equal(intact, lastAcked + 1, 'all acknowledged records intact');
  });
}
