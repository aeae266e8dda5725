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
 * A gateway that fails (down, overloaded, unreachable) pauses sending the same way, for
 * `outagePauseMs` doubling up to `pauseMs`, so that an outage of hours spends one attempt a pause
 * instead of one per queued message; the admin is told once it has lasted `outageAlertMs`.
 *
 * State is per process (each instance probes on its own), as for M-Pesa's configuration pause.
 */
export class SmsSendingGate {
  private pausedUntil = 0;
  private probing = false;
  /** The problem the admin was told about, until a message goes out again. */
  private reported: string | null = null;
  /** When the gateway's current outage began (its first failure since a message went out). */
  private outageSince: number | null = null;
  private outagePauses = 0;
  private outageReported = false;

  constructor(
    readonly pauseMs = 5 * 60_000,
    readonly outagePauseMs = 30_000,
    readonly outageAlertMs = 10 * 60_000,
  ) {}

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

  /**
   * The gateway failed, not the account nor the message: pause until the returned time, longer at
   * each failure of one outage. The admin is told once the outage has lasted `outageAlertMs`.
   */
  unavailable(now: Date, problem: string, logger?: Logger): Date {
    const at = now.getTime();
    this.outageSince ??= at;
    const pauseMs = Math.min(this.pauseMs, this.outagePauseMs * 2 ** this.outagePauses);
    this.outagePauses++;
    this.pausedUntil = Math.max(this.pausedUntil, at + pauseMs);
    this.probing = true;
    const until = new Date(this.pausedUntil);
    const lasted = at - this.outageSince;
    if (!this.outageReported && lasted >= this.outageAlertMs) {
      this.outageReported = true;
      logger?.error(
        { problem, since: new Date(this.outageSince).toISOString(), pausedUntil: until.toISOString() },
        `Africa's Talking has failed every SMS for ${Math.round(lasted / 60_000)} minutes (${problem}). ` +
          `Messages wait and are not given up for it; one message tries again every ${Math.round(this.pauseMs / 1000)} s at most.`,
      );
    } else {
      logger?.warn({ problem, pausedUntil: until.toISOString() }, "SMS gateway failed: sending paused");
    }
    return until;
  }

  /** A message went out: the account and the gateway are fine (again). */
  succeeded(logger?: Logger): void {
    if (this.reported) logger?.info({ problem: this.reported }, "Africa's Talking accepts SMS again");
    if (this.outageReported) logger?.info({}, "Africa's Talking answers again: queued SMS are going out");
    this.probing = false;
    this.reported = null;
    this.outageSince = null;
    this.outagePauses = 0;
    this.outageReported = false;
  }
}

/**
 * A send was refused for the account: the message waits (its attempts untouched, the gateway's
 * reason recorded) until the pause ends, and so do the messages claimed with it and not yet sent:
 * they would be refused the same way. `error` is the gateway's refusal, its text already masked.
 */
export async function holdForAccount(
  deps: { db: Db; clock: Clock; logger?: Logger },
  gate: SmsSendingGate,
  refusal: { error: SmsSendError; text: string },
  rowId: number,
  unsentIds: number[],
): Promise<void> {
  const until = gate.refused(deps.clock.now(), refusal.error.message, refusal.error.advice, deps.logger);
  await deps.db
    .update(messageOutbox)
    .set({ lastError: refusal.text.slice(0, 500), nextAttemptAt: until })
    .where(eq(messageOutbox.id, rowId));
  await holdUntil(deps.db, unsentIds, until);
}

/** Messages claimed and not sent wait for the pause's end, their attempts untouched. */
export async function holdUntil(db: Db, ids: number[], until: Date): Promise<void> {
  if (ids.length === 0) return;
  await db.update(messageOutbox).set({ nextAttemptAt: until }).where(inArray(messageOutbox.id, ids));
}
