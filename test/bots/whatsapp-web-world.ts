import { and, asc, eq } from "drizzle-orm";
import type { BillingContext } from "../../src/billing/context.ts";
import { createChatMenu } from "../../src/bots/chat-menu.ts";
import type { ChatContent } from "../../src/bots/chat-sender.ts";
import type { Timers } from "../../src/bots/whatsapp-web/client.ts";
import { FakeWhatsAppWebClient } from "../../src/bots/whatsapp-web/fake-client.ts";
import { startWhatsAppWeb, type WhatsAppWebOptions } from "../../src/bots/whatsapp-web/index.ts";
import type { FakeClock } from "../../src/clock.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { settings, silent } from "../ussd/world.ts";

/** Timers that fire only when the test says so: back-off is checked without waiting. */
export class ManualTimers implements Timers {
  readonly pending: { run: () => void; ms: number }[] = [];
  setTimeout(run: () => void, ms: number): unknown {
    const entry = { run, ms };
    this.pending.push(entry);
    return entry;
  }
  clearTimeout(handle: unknown): void {
    const at = this.pending.indexOf(handle as { run: () => void; ms: number });
    if (at >= 0) this.pending.splice(at, 1);
  }
  /** Runs the oldest pending timer; returns its delay. */
  fire(): number {
    const next = this.pending.shift();
    if (!next) throw new Error("no timer pending");
    next.run();
    return next.ms;
  }
}

/** Lets promise chains started by an event (initialize, a queued message) run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/**
 * The channel on a real database with fake WhatsApp clients: each (re)connect makes a new fake,
 * the QR goes to `printed` instead of the terminal, and pacing waits advance the clock instead
 * of sleeping.
 */
export function startWorld(ctx: BillingContext, clock: FakeClock, extra: Partial<WhatsAppWebOptions> = {}) {
  const clients: FakeWhatsAppWebClient[] = [];
  const printed: string[] = [];
  const qrs: string[] = [];
  const codes: string[] = [];
  const waits: number[] = [];
  const timers = new ManualTimers();
  /** Each new client fails its first `initialize` this many times (set before a reconnect). */
  const world = { failNextStarts: 0 };
  const wa = startWhatsAppWeb({
    db: ctx.db,
    clock,
    // WA_DEBUG=1 shows what the channel logs (a failed message is only logged).
    logger: process.env.WA_DEBUG ? createLogger("error") : silent,
    chatMenu: createChatMenu({
      db: ctx.db,
      services: createMenuServices(ctx, { planCacheMs: 0 }),
      settings,
      logger: silent,
      clock,
    }),
    dataDir: "/nonexistent",
    chromiumPath: "/nonexistent/chromium",
    clientFactory: () => {
      const client = new FakeWhatsAppWebClient();
      if (world.failNextStarts > 0) {
        world.failNextStarts--;
        client.failInitialize = 1;
      }
      clients.push(client);
      return client;
    },
    printQr: (qr) => printed.push(qr),
    onQr: (qr) => {
      qrs.push(qr);
    },
    onPairingCode: (code) => {
      codes.push(code);
    },
    sleep: async (ms) => {
      waits.push(ms);
      clock.advance(ms);
    },
    timers,
    ...extra,
  });
  const delivered = new Set<number>();

  async function outbox(digits: string) {
    return ctx.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.channel, "whatsapp"), eq(messageOutbox.recipient, digits)))
      .orderBy(asc(messageOutbox.id));
  }

  return {
    wa,
    world,
    clients,
    printed,
    qrs,
    codes,
    waits,
    timers,
    outbox,
    client: () => clients.at(-1)!,
    /** A message from `from`, handled to the end (its answers are in the outbox). */
    async receive(message: Parameters<FakeWhatsAppWebClient["receive"]>[0]) {
      clients.at(-1)!.receive(message);
      await flush();
      await wa.idle();
    },
    /** Sends the chat's queued answers through the sender, as the delivery worker would. */
    async deliver(digits: string): Promise<string[]> {
      const texts: string[] = [];
      for (const row of await outbox(digits)) {
        if (delivered.has(row.id)) continue;
        delivered.add(row.id);
        await wa.sender.send(row.recipient, row.content as unknown as ChatContent);
        texts.push(clients.at(-1)!.sent.at(-1)!.text);
      }
      return texts;
    },
  };
}

export type World = ReturnType<typeof startWorld>;
