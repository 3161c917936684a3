#!/usr/bin/env node
import { parseSynthOptions, UsageError } from './lib/app/options';
import { formatSynthResult, synthesize } from './lib/app/synth';

/** The cdk8s app: options (flags, APIEXT_* environment, --config file) → synth → dist/. */
function main(argv: readonly string[]): number {
  try {
    const options = parseSynthOptions(argv);
    if (!options) return 0; // --help was printed
    console.log(formatSynthResult(synthesize(options)));
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`error: ${message}`);
    if (!(error instanceof UsageError)) console.error('nothing was written: the output directory is as it was');
    return error instanceof UsageError ? 2 : 1;
  }
}

process.exitCode = main(process.argv.slice(2));
