/**
 * `npm run bench:synth`: wall time of the synth a user runs (`npm run synth`: `node scripts/synth.js`), as medians
 * over several runs and as ratios to `node -e 0` measured in the same run:
 *   (a) a synth that reuses the PKI directory, (b) one that creates the PKI;
 * then the in-process cost of an app holding 1…20 aggregated API servers, to show it grows
 * linearly (constant time per server).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'cdk8s';
import { addServerChart } from '../lib/app/synth';
import { SynthOptions } from '../lib/app/options';
import { WARDLE } from '../apis';

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
/** What `npm run synth` runs: the launcher that rebuilds a stale app, then build/main.js. */
const MAIN = path.resolve(__dirname, '..', '..', 'scripts', 'synth.js');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function timeCommand(args: string[], cwd: string, before?: () => void): number {
  before?.();
  const start = process.hrtime.bigint();
  const run = spawnSync(process.execPath, args, { cwd, encoding: 'utf8' });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  if (run.status !== 0) throw new Error(`${args.join(' ')} failed: ${run.stderr}`);
  return elapsed;
}

function main(): void {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-bench-'));
  try {
    const synthArgs = [MAIN, '--output', 'dist', '--pki-dir', 'pki'];
    timeCommand(synthArgs, work); // warm the file cache and create the PKI used by (a)

    const baseline: number[] = [];
    const reuse: number[] = [];
    const create: number[] = [];
    // Interleave the three so that drift in machine load hits them alike.
    for (let i = 0; i < RUNS; i++) {
      baseline.push(timeCommand(['-e', '0'], work));
      reuse.push(timeCommand(synthArgs, work));
      create.push(timeCommand([MAIN, '--output', 'dist-new', '--pki-dir', 'pki-new'], work, () => fs.rmSync(path.join(work, 'pki-new'), { recursive: true, force: true })));
    }
    const base = median(baseline);
    console.log(`synth wall time, median of ${RUNS} runs (${os.cpus().length} CPUs, node ${process.version})`);
    console.log(`  node -e 0 (baseline)          ${(base * 1000).toFixed(0).padStart(6)} ms   1.0x`);
    console.log(`  (a) synth reusing the PKI     ${(median(reuse) * 1000).toFixed(0).padStart(6)} ms   ${(median(reuse) / base).toFixed(1)}x   target <= 1000 ms`);
    console.log(`  (b) synth creating the PKI    ${(median(create) * 1000).toFixed(0).padStart(6)} ms   ${(median(create) / base).toFixed(1)}x   target <= 1500 ms`);

    // Scaling: N servers in one app, PKI already created, measured in-process after a warm-up.
    const counts = [1, 5, 10, 20];
    const options = (i: number): SynthOptions => ({
      namespace: `tenant-${i}`,
      name: `wardle-apiserver-${i}`,
      replicas: 2,
      sharedStorage: true,
      securePort: 10250,
      groupPriorityMinimum: 1000,
      versionPriority: 15,
      certMode: 'self-signed',
      pkiDir: path.join(work, 'pki-scale'),
      certValidityDays: 365,
      caValidityDays: 3650,
      clusterDomain: 'cluster.local',
      output: path.join(work, 'scale'),
    });
    const synthApp = (n: number) => {
      const app = new App({ outdir: path.join(work, `scale-${n}`) });
      // Each its own group: two servers of one group in one app are refused (one APIService per group version).
      for (let i = 0; i < n; i++) addServerChart(app, options(i), { ...WARDLE, group: `wardle-${i}.example.com` });
      app.synth();
    };
    synthApp(Math.max(...counts)); // creates every PKI once and warms the JIT
    console.log('app with N aggregated API servers (PKI reused), in-process, median of 5');
    const perServer: number[] = [];
    for (const n of counts) {
      const times: number[] = [];
      for (let r = 0; r < 5; r++) {
        const start = process.hrtime.bigint();
        synthApp(n);
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      const ms = median(times);
      perServer.push(ms / n);
      console.log(`  N=${String(n).padStart(2)}  ${ms.toFixed(1).padStart(8)} ms   ${(ms / n).toFixed(1).padStart(6)} ms per server`);
    }
    console.log(`  per-server time at N=20 / at N=1: ${(perServer[perServer.length - 1] / perServer[0]).toFixed(2)} (<= 1 means no worse than linear)`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
