import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    setupFiles: ["test/support/sealing-key.ts"],
    pool: "forks",
    testTimeout: 30_000,
    // A polled condition waits as long as a test may run, not a second: on two cores shared with
    // the database and another test file, a worker's pass can take longer than that.
    expect: { poll: { timeout: 20_000 } },
    hookTimeout: 60_000,
    // Two cores: more workers only queue behind each other and make PGlite start-up slower.
    maxWorkers: 2,
  },
});
