/**
 * `/version`, shaped like k8s.io/apimachinery/pkg/version.Info so `kubectl version` and client
 * libraries read it. The bundle build (server/build.mjs) substitutes the git fields; a checkout
 * run reports `unknown` for them.
 */
export interface VersionInfo {
  readonly major: string;
  readonly minor: string;
  readonly gitVersion: string;
  readonly gitCommit: string;
  readonly gitTreeState: string;
  readonly buildDate: string;
  readonly compiler: string;
  readonly platform: string;
}

/** The project's version; kept in step with package.json by the release that bumps it. */
const VERSION = process.env.SERVER_VERSION ?? '0.1.0';

const ARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm' };

function versionInfo(): VersionInfo {
  const [major = '0', minor = '0'] = VERSION.split('.');
  return {
    major,
    minor,
    gitVersion: `v${VERSION}`,
    gitCommit: process.env.SERVER_GIT_COMMIT ?? 'unknown',
    gitTreeState: process.env.SERVER_GIT_TREE_STATE ?? 'unknown',
    buildDate: process.env.SERVER_BUILD_DATE ?? '1970-01-01T00:00:00Z',
    compiler: `node ${process.version}`,
    platform: `${process.platform}/${ARCH[process.arch] ?? process.arch}`,
  };
}

export const SERVER_VERSION: VersionInfo = versionInfo();
