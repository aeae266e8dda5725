import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configSchema } from "../src/config.ts";

/** An operator configures Tandao from the README: every setting the app reads is named there. */
describe("README", () => {
  it("names every setting the configuration reads", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const missing = Object.keys(configSchema.shape).filter((name) => !readme.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
