#!/usr/bin/env node
import { parseSynthOptions, UsageError } from './lib/app/options';
import { formatSynthResult, synthesize } from './lib/app/synth';
import { DEFAULT_SERVER_IMAGE } from './lib/aggregated-api-server';

/** The cdk8s app: options (flags, APIEXT_* environment, --config file) → synth → dist/. */
function main(argv: readonly string[]): number {
  try {
    const options = parseSynthOptions(argv);
    if (!options) return 0; // --help was printed
    console.log(formatSynthResult(synthesize(options)));
    if (options.image === undefined) {
      // The default names the bundled server's image, which no registry holds: applied as it is,
      // the pods stay in ImagePullBackOff and the unavailable APIService breaks discovery cluster-wide.
      // On stdout, as the summary's last line: what a synth prints on stderr is its errors.
      console.log(
        `warning: the server image is the default "${DEFAULT_SERVER_IMAGE}", which is not published: build and push it, then synth with --image ` +
          '(README, "Build the image and point the synth at it")',
      );
    }
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`error: ${message}`);
    if (!(error instanceof UsageError)) console.error('nothing was written: the output directory is as it was');
    return error instanceof UsageError ? 2 : 1;
  }
}

process.exitCode = main(process.argv.slice(2));
