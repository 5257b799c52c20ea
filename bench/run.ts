/**
 * Benchmark dispatcher: `npm run bench -- <name> [options]`. Each benchmark measures Cairn and its
 * peers side by side in one run and prints ratios; absolute numbers vary between machines.
 */
import { runNbdBench } from './nbd';
import { runRaftBench } from './raft';

const benches: Record<string, (argv: string[]) => Promise<void>> = {
  nbd: runNbdBench,
  raft: runRaftBench,
};

async function main(): Promise<void> {
  const [name = 'nbd', ...rest] = process.argv.slice(2);
  const bench = benches[name];
  if (!bench) {
    process.stderr.write(`unknown benchmark '${name}'; available: ${Object.keys(benches).join(', ')}\n`);
    process.exitCode = 2;
    return;
  }
  await bench(rest);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
