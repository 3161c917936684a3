// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

const noCdk8s = [
  { group: ['cdk8s', 'cdk8s-plus-*', 'constructs'], message: 'server/ and apis/ must not depend on cdk8s: the image carries only what the server needs.' },
];

export default tseslint.config(
  { ignores: ['build/**', 'dist/**', 'node_modules/**', 'imports/**', 'coverage/**', '**/*.js', '**/*.mjs'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'smart'],
    },
  },
  {
    files: ['server/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [...noCdk8s, { group: ['**/lib', '**/lib/**', '**/imports/**'], message: 'server/ never imports lib/ or imports/.' }] }],
    },
  },
  {
    files: ['apis/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [...noCdk8s, { group: ['**/lib/**', '**/server/**'], message: 'apis/ is pure data shared by lib/ and server/.' }] }],
    },
  },
  {
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/server', '**/server/**'], message: 'lib/ never imports server/.' }] }],
    },
  },
);
