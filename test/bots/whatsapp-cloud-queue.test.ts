import { describe, expect, it } from "vitest";
import { ChatQueue } from "../../src/bots/whatsapp-cloud/queue.ts";

/** A promise resolved from outside: a job that finishes when the test says so. */
function gate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe("the WhatsApp send queue", () => {
  it("keeps one chat's jobs in order, lets other chats pass, and reports when all are done", async () => {
    const errors: string[] = [];
    const queue = new ChatQueue((_error, chat) => errors.push(chat), 3);
    const done: string[] = [];
    const first = gate();
    const bRan = gate();
    queue.push("a", async () => {
      await first.opened;
      done.push("a1");
    });
    queue.push("a", async () => {
      done.push("a2");
    });
    queue.push("b", async () => {
      done.push("b1");
      bRan.open();
      throw new Error("send failed");
    });
    expect(queue.hasRoom(1)).toBe(false);
    await bRan.opened;
    // b ran although a's first job is still waiting; a's second waits behind it.
    expect(done).toEqual(["b1"]);
    first.open();
    await queue.idle();
    expect(done).toEqual(["b1", "a1", "a2"]);
    expect(errors).toEqual(["b"]);
    expect(queue.size).toBe(0);
    expect(queue.hasRoom(3)).toBe(true);
  });
});
