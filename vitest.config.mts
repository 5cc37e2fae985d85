import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Every test's temporary folders in one per run, removed at its end (test/global-tmp.ts).
    globalSetup: ['test/global-tmp.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Interop and e2e tests share namespaces, ports and CPU: run files one at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
