/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.c?ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: false }] },
  moduleFileExtensions: ['js', 'mjs', 'cjs', 'jsx', 'ts', 'tsx', 'cts', 'json', 'node'],
  // Sources import each other with the `.js` extension the ESM build needs; map it back for ts-jest.
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // lib/require.cts is always CommonJS (see there); sources import it as './require.cjs'.
    '^(\\.{1,2}/)+require\\.cjs$': '<rootDir>/lib/require.cts',
    // The README's examples import the package by name, as users do (test/readme-testing-example.test.ts).
    '^express-llm-gateway$': '<rootDir>/lib/index.ts',
    '^express-llm-gateway/testing$': '<rootDir>/lib/testing/index.ts',
    // EXPRESS_MAJOR=4 runs the whole suite, the library's own imports included, on Express 4.
    ...(process.env.EXPRESS_MAJOR === '4' ? { '^express(/.*)?$': 'express4$1' } : {}),
  },
  testTimeout: 20000,
};
