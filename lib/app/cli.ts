#!/usr/bin/env node
import { runDoctor } from './doctor';
import { runFrontProxyCommand, runPki } from './pki';

/** The package's command (`npx cdk8s-api-extension <command>`): one entry, a command per job. */
const COMMANDS: Record<string, { readonly summary: string; readonly run: (argv: readonly string[]) => Promise<number> }> = {
  doctor: {
    summary: 'check a live installation against the cluster and say what is wrong and what fixes it',
    run: (argv) =>
      runDoctor(argv, {
        write: (text) => process.stdout.write(`${text}\n`),
        error: (text) => process.stderr.write(`${text}\n`),
        colour: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
      }),
  },
  pki: {
    summary: 'inspect the certificates of the PKI directory and dist/ (pki inspect), or force a new serving certificate or CA (pki rotate)',
    run: (argv) => runPki(argv, commandIo()),
  },
  'front-proxy': {
    summary: 'make the front-proxy CA and client certificate for a cluster without the aggregation layer, and print the kube-apiserver flags',
    run: (argv) => runFrontProxyCommand(argv, commandIo()),
  },
};

/** stdout and stderr, colour only on a terminal. */
function commandIo() {
  return {
    write: (text: string) => process.stdout.write(`${text}\n`),
    error: (text: string) => process.stderr.write(`${text}\n`),
    colour: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
  };
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return [
    'usage: cdk8s-api-extension <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`),
    '',
    'cdk8s-api-extension <command> --help shows its options. Synthesize with "npm run synth" (or cdk8s synth).',
  ].join('\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`error: "${name}" is not a command (expected one of: ${Object.keys(COMMANDS).join(', ')})\n\n${usage()}\n`);
    return 2;
  }
  return command.run(rest);
}

/** Runs the command `argv` names and sets the exit code: as the bin, or from `npm run doctor` & co. (scripts/synth.js). */
export function runCli(argv: readonly string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (error: Error) => {
      process.stderr.write(`error: ${error.stack ?? error.message}\n`);
      process.exitCode = 1;
    },
  );
}

if (require.main === module) runCli(process.argv.slice(2));
