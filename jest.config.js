/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  testTimeout: 60000,
  // One temporary directory per run (the workers' TMPDIR, removed at the end) and one server bundle.
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  // Server and end-to-end tests start processes and bind ports; two workers fit this 2-core machine.
  maxWorkers: 2,
  // The README's example imports the package by name, as another cdk8s app would.
  moduleNameMapper: { '^cdk8s-api-extension$': '<rootDir>/lib/index.ts' },
};
