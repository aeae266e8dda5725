import { setImmediate as nextTurn } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createTurnBatcher } from "../../src/lib/turn-batcher.ts";

describe("the turn batcher", () => {
  it("runs the calls made in one turn as one batch, in order, and a later call as another", async () => {
    const batches: number[][] = [];
    const double = createTurnBatcher(async (items: number[]) => {
      batches.push(items);
      return items.map((n) => n * 2);
    });
    expect(await Promise.all([double(1), double(2), double(3)])).toEqual([2, 4, 6]);
    expect(await double(4)).toBe(8);
    expect(batches).toEqual([[1, 2, 3], [4]]);
  });

  it("splits a turn larger than the batch size", async () => {
    const sizes: number[] = [];
    const echo = createTurnBatcher(
      async (items: number[]) => {
        sizes.push(items.length);
        return items;
      },
      { maxItems: 2 },
    );
    expect(await Promise.all([1, 2, 3, 4, 5].map(echo))).toEqual([1, 2, 3, 4, 5]);
    expect(sizes).toEqual([2, 2, 1]);
  });

  describe("with a window", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it("gathers the calls of several turns until the window closes, then starts another", async () => {
      vi.useFakeTimers({ toFake: ["setTimeout"] });
      const batches: number[][] = [];
      const record = createTurnBatcher(
        async (items: number[]) => {
          batches.push(items);
          return items;
        },
        { windowMs: 20 },
      );
      const first = record(1);
      await nextTurn();
      const second = record(2);
      await nextTurn();
      vi.advanceTimersByTime(19);
      await nextTurn();
      // Still open: nothing has run.
      expect(batches).toEqual([]);
      const third = record(3);
      vi.advanceTimersByTime(1);
      expect(await Promise.all([first, second, third])).toEqual([1, 2, 3]);
      const fourth = record(4);
      vi.advanceTimersByTime(20);
      expect(await fourth).toBe(4);
      expect(batches).toEqual([[1, 2, 3], [4]]);
    });
  });

  it("when a batch fails, runs each item alone: only the item refused fails its caller", async () => {
    const batches: string[][] = [];
    const store = createTurnBatcher(async (items: string[]) => {
      batches.push(items);
      if (items.includes("bad")) throw new Error("refused: bad");
      return items.map((item) => item.toUpperCase());
    });
    const results = await Promise.allSettled([store("a"), store("bad"), store("c")]);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([
      "A",
      "refused: bad",
      "C",
    ]);
    expect(batches).toEqual([["a", "bad", "c"], ["a"], ["bad"], ["c"]]);
  });

  it("fails every caller of a batch that answered with the wrong number of results", async () => {
    const broken = createTurnBatcher(async (items: number[]) => items.slice(1));
    const results = await Promise.allSettled([broken(1), broken(2)]);
    expect(results.every((r) => r.status === "rejected")).toBe(true);
  });
});
