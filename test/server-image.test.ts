/**
 * server/Dockerfile, checked without a container runtime: an LTS Node.js in both stages, a
 * distroless non-root runtime stage holding only the files server/build.mjs writes (a bundle
 * that runs with no node_modules), the UID the synthesized Deployment runs as, and a build
 * context that never carries the PKI directory.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { SERVER_USER_ID } from '../lib/api-server-deployment';
import { serverBundle } from './support/server-process';

const ROOT = path.join(__dirname, '..');
const DOCKERFILE = readFileSync(path.join(ROOT, 'server', 'Dockerfile'), 'utf8');
const lines = DOCKERFILE.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
const stages = lines.reduce<string[][]>((acc, line) => (line.startsWith('FROM ') ? [...acc, [line]] : acc.length ? [...acc.slice(0, -1), [...acc[acc.length - 1], line]] : acc), []);

/** Even majors are the LTS lines; 20 leaves maintenance in April 2026, 22 in April 2027. */
const LTS_MAJORS = [24, 26];

/** Whether `file` is left out of the build context by a .dockerignore (gitignore-like; later lines win). */
function ignored(patterns: string[], file: string): boolean {
  let result = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/\/$/, '');
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    if (regex.test(file)) result = !negate;
  }
  return result;
}

describe('server/Dockerfile', () => {
  test('builds and runs on an LTS Node.js', () => {
    const version = /^ARG NODE_VERSION=(\d+)$/m.exec(DOCKERFILE)?.[1];
    expect(LTS_MAJORS).toContain(Number(version));
    expect(stages.map((s) => s[0])).toEqual([
      'FROM node:${NODE_VERSION}-bookworm-slim AS build',
      'FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot',
    ]);
  });

  test('the runtime stage runs the bundle as the non-root UID the Deployment sets, with nothing else copied in', () => {
    // GIVEN the runtime stage
    const runtime = stages[1];

    // THEN it runs as the Deployment's UID, copies only build outputs, and installs nothing
    expect(runtime).toContain(`USER ${SERVER_USER_ID}:${SERVER_USER_ID}`);
    expect(SERVER_USER_ID).not.toBe(0);
    const copies = runtime.filter((l) => l.startsWith('COPY'));
    expect(copies).toEqual(['COPY --from=build /out/server.js /out/server.js.map /out/server.js.LEGAL.txt /app/']);
    expect(runtime.some((l) => /^RUN /.test(l))).toBe(false);
    // without --enable-source-maps, which would hold the decoded map (~95 MiB of RSS), and with
    // the young generation capped (Node 24 grows it by the machine's memory)
    expect(runtime.at(-1)).toBe('ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=16", "/app/server.js"]');
  });

  test('node accepts the entrypoint\'s flags and runs the bundle with them', () => {
    // GIVEN the entrypoint's node flags
    const entrypoint = JSON.parse(stages[1].at(-1)!.replace(/^ENTRYPOINT /, '')) as string[];
    const flags = entrypoint.slice(1, -1);
    expect(flags).toEqual(['--max-semi-space-size=16']);

    // THEN node starts the bundle with them (an unknown flag would stop it: "bad option")
    expect(execFileSync(process.execPath, [...flags, serverBundle(), '--version'], { encoding: 'utf8' }).trim()).toMatch(/^v\d+\.\d+\.\d+/);
  });

  test('copies exactly the files server/build.mjs writes, and that bundle runs without node_modules', () => {
    // GIVEN the bundle, built as the build stage builds it, into a directory with no node_modules above it
    const bundle = serverBundle();
    const dir = path.dirname(bundle);

    // THEN every file the runtime stage copies exists (a missing one fails `docker build`)
    for (const file of ['server.js', 'server.js.map', 'server.js.LEGAL.txt']) expect(existsSync(path.join(dir, file))).toBe(true);
    // AND the bundle starts from there: every runtime dependency is inside it
    expect(execFileSync(process.execPath, [bundle, '--version'], { cwd: dir, encoding: 'utf8' }).trim()).toMatch(/^v\d+\.\d+\.\d+/);
    // AND etcd's gRPC protos are inlined (server/build.mjs), not read from a proto/ directory the image has not got
    const code = readFileSync(bundle, 'utf8');
    expect(code).toContain('proto_loader_1.fromJSON)(');
    expect(code).not.toContain('../proto/rpc.proto');
  });

  test('the build context holds what the build stage copies, and never the PKI, dist/ or node_modules', () => {
    // GIVEN the context ignore file BuildKit reads for server/Dockerfile
    const patterns = readFileSync(path.join(ROOT, 'server', 'Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));

    // THEN every source the build stage COPYs is sent
    const sources = stages[0].filter((l) => l.startsWith('COPY ')).flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(sources).toEqual(['package.json', 'package-lock.json', 'tsconfig.json', 'apis', 'server']);
    for (const file of [...sources, 'apis/index.ts', 'server/main.ts', 'server/build.mjs']) expect(ignored(patterns, file)).toBe(false);
    // AND the CA private key and the synth output are not
    for (const file of ['.pki/ca.key', '.pki', 'dist/secret.k8s.yaml', 'node_modules/yaml/package.json', '.git/config', 'test/support/pki.ts']) {
      expect(ignored(patterns, file)).toBe(true);
    }
  });
});
