import { describe, expect, it } from "vitest";
import { SessionCache } from "../../src/menu/session-cache.ts";

describe("SessionCache", () => {
  it("keeps a value for its time to live, then reads afresh", async () => {
    let now = 0;
    const cache = new SessionCache(1_000, 10, () => now);
    cache.set("a", Promise.resolve(1));
    now = 1_000;
    expect(await cache.get("a")).toBe(1);
    now = 1_001;
    expect(cache.get("a")).toBeUndefined();
  });

  it("drops the oldest entry when full", async () => {
    const cache = new SessionCache(60_000, 2);
    cache.set("a", Promise.resolve(1));
    cache.set("b", Promise.resolve(2));
    cache.set("c", Promise.resolve(3));
    expect(cache.get("a")).toBeUndefined();
    expect(await cache.get("c")).toBe(3);
    expect(cache.size).toBe(2);
  });

  it("does not remember a failed read", async () => {
    const cache = new SessionCache();
    const failing = Promise.reject(new Error("database away"));
    cache.set("a", failing);
    await expect(failing).rejects.toThrow();
    await Promise.resolve();
    expect(cache.get("a")).toBeUndefined();
  });
});
