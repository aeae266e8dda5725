import { eq, inArray } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { messageOutbox } from "../db/schema/index.ts";
import type { Logger } from "../logger.ts";
import type { SmsSendError } from "./sms-client.ts";

/**
 * When Africa's Talking refuses the account rather than a message (sender ID not registered,
 * balance used up, credentials refused), every message would fail the same way: sending them one
 * after the other only burns their attempts and floods the log. The gate pauses all SMS sending for
 * `pauseMs` and tells the admin once, naming what to fix; after each pause a single message probes
 * whether it was fixed before the rest follow. The refused messages keep their attempts: nothing
 * is given up because of the account.
 *
 * State is per process (each instance probes on its own), as for M-Pesa's configuration pause.
 */
export class SmsAccountGate {
  private pausedUntil = 0;
  private probing = false;
  /** The problem the admin was told about, until a message goes out again. */
  private reported: string | null = null;

  constructor(readonly pauseMs = 5 * 60_000) {}

  /** False while paused: a delivery pass claims nothing. */
  allowsSending(now: Date): boolean {
    return now.getTime() >= this.pausedUntil;
  }

  /** How many messages a pass may claim: one while probing after a pause. */
  batchSize(normal: number): number {
    return this.probing ? 1 : normal;
  }

  /**
   * The gateway refused the account: pause until the returned time. The admin is told once per
   * problem, not per message or pause.
   */
  refused(now: Date, problem: string, advice: string | undefined, logger?: Logger): Date {
    this.pausedUntil = Math.max(this.pausedUntil, now.getTime() + this.pauseMs);
    this.probing = true;
    const until = new Date(this.pausedUntil);
    if (this.reported !== problem) {
      this.reported = problem;
      logger?.error(
        { problem, pausedUntil: until.toISOString() },
        `Africa's Talking refused the account (${problem})${advice ? `: ${advice}` : ""}. ` +
          `SMS sending is paused for ${Math.round(this.pauseMs / 1000)} s at a time, then one message ` +
          "tries again; messages wait without using up their attempts.",
      );
    } else {
      logger?.warn({ problem, pausedUntil: until.toISOString() }, "SMS still refused for the account");
    }
    return until;
  }

  /** A message went out: the account is fine (again). */
  succeeded(logger?: Logger): void {
    if (this.reported) logger?.info({ problem: this.reported }, "Africa's Talking accepts SMS again");
    this.probing = false;
    this.reported = null;
  }
}

/**
 * A send was refused for the account: the message waits (its attempts untouched, the gateway's
 * reason recorded) until the pause ends, and so do the messages claimed with it and not yet sent:
 * they would be refused the same way. `error` is the gateway's refusal, its text already masked.
 */
export async function holdForAccount(
  deps: { db: Db; clock: Clock; logger?: Logger },
  gate: SmsAccountGate,
  refusal: { error: SmsSendError; text: string },
  rowId: number,
  unsentIds: number[],
): Promise<void> {
  const until = gate.refused(deps.clock.now(), refusal.error.message, refusal.error.advice, deps.logger);
  await deps.db
    .update(messageOutbox)
    .set({ lastError: refusal.text.slice(0, 500), nextAttemptAt: until })
    .where(eq(messageOutbox.id, rowId));
  if (unsentIds.length > 0) {
    await deps.db
      .update(messageOutbox)
      .set({ nextAttemptAt: until })
      .where(inArray(messageOutbox.id, unsentIds));
  }
}
