import type { ChatSender } from "../../src/bots/chat-sender.ts";
import type { FakeClock } from "../../src/clock.ts";

/**
 * A Telegram stand-in for the chat delivery worker that records each message it is given as
 * `recipient:text`. With `hold`, the first send waits until `letGo`, as a slow Telegram would; with
 * `slowMs`, each send takes that long on `clock`.
 */
export function recordingSender(options: { hold?: boolean; clock?: FakeClock; slowMs?: number } = {}) {
  const got: string[] = [];
  let letGo: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    letGo = resolve;
  });
  const sender: ChatSender = {
    channel: "telegram",
    async send(to, content) {
      if (options.slowMs) options.clock?.advance(options.slowMs);
      got.push(`${to}:${content.kind === "text" ? content.text : content.kind}`);
      if (options.hold && got.length === 1) await held;
      return { messageId: String(got.length) };
    },
  };
  return { sender, got, letGo };
}
