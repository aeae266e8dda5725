import { and, asc, eq, inArray, lte, sql } from "drizzle-orm";
import { enqueueMessage } from "../billing/outbox.ts";
import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { messageOutbox } from "../db/schema/index.ts";
import { isSealed, requireBox } from "../db/sealed.ts";
import { normalizePhone } from "../lib/phone.ts";
import type { Logger } from "../logger.ts";
import { type Language, maskSecrets, type Params, renderSms, type Signing, secretParams } from "./render.ts";
import { SmsSendError, type SmsSender } from "./sms-client.ts";
import { holdForAccount, holdUntil, SmsSendingGate } from "./sms-pause.ts";

/**
 * A message that met only the gateway's failures is not given up before this age, whatever its
 * attempts: an outage of hours (Africa's Talking down, the server's uplink or DNS gone) must not
 * turn every queued receipt, voucher code and router login into a `/resend`.
 */
export const GATEWAY_OUTAGE_GIVE_UP_MS = 24 * 60 * 60_000;

export interface SmsWorkerOptions extends Signing {
  db: Db;
  clock: Clock;
  sender: SmsSender;
  logger?: Logger;
  /**
   * A message is given up (`dead`) after this many failed attempts; after a gateway failure, only
   * once it is also `GATEWAY_OUTAGE_GIVE_UP_MS` old.
   */
  maxAttempts?: number;
  /** Delay after the first failure; doubles with each further one, up to `maxDelayMs`. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  batchSize?: number;
  /**
   * `ADMIN_PHONE`: told by SMS when a message is given up (one alert an hour at most; an alert
   * given up tells nobody, or a number that refuses SMS would alert itself for ever).
   */
  adminPhone?: string;
  /** How long a claimed row stays invisible to other workers while it is being sent. */
  leaseMs?: number;
  /** How long one send may take before it counts as failed (default 15 s). */
  sendTimeoutMs?: number;
  /**
   * Told of each message the gateway accepted, with its text as a log may carry it (secret
   * parameters masked): sandbox mode prints these.
   */
  onSent?: (sms: { to: string; text: string; messageId: string }) => void;
  /**
   * Pauses all sending while Africa's Talking refuses the account (sms-pause.ts); `startSmsWorker`
   * keeps one across passes. Without it, such a refusal still ends the pass and holds its messages.
   */
  gate?: SmsSendingGate;
}

export interface SmsRunCounts {
  sent: number;
  retried: number;
  dead: number;
}

/** Secret parameters are stored sealed (src/db/sealed.ts): they are opened only to be sent. */
export function openSecrets(template: string, params: Params): Params {
  let opened = params;
  for (const name of secretParams(template)) {
    const value = params[name];
    if (typeof value === "string" && isSealed(value))
      opened = { ...opened, [name]: requireBox().open(value) };
  }
  return opened;
}

/** Exponential backoff: base, 2×base, 4×base, … capped. `attempts` counts failures so far (≥ 1). */
export function retryDelayMs(attempts: number, baseDelayMs: number, maxDelayMs: number): number {
  return Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, attempts - 1));
}

/**
 * Sends the SMS rows of `message_outbox` that are due. Rows are claimed in a short transaction
 * (lease by pushing `next_attempt_at` ahead, `skip locked` so workers never share a row) and sent
 * after it commits: no transaction is held open across the gateway call.
 *
 * Each recipient gets their messages in the order they were written (by id: a use-case writes them
 * in the order its events happen, e.g. the receipt before "service active"). A row is only due when
 * no earlier row to the same recipient is still pending: one being sent by any worker, or waiting
 * for a retry, holds the later ones back until it is sent or given up (`dead`). So a pass sends at
 * most one message per recipient; the worker loop runs the next pass at once after a pass that sent.
 */
export async function deliverDueSms(options: SmsWorkerOptions): Promise<SmsRunCounts> {
  const { db, clock, sender } = options;
  const maxAttempts = options.maxAttempts ?? 8;
  const baseDelayMs = options.baseDelayMs ?? 30_000;
  const maxDelayMs = options.maxDelayMs ?? 3_600_000;
  const now = clock.now();
  const sendTimeoutMs = options.sendTimeoutMs ?? 15_000;
  const leaseUntil = new Date(now.getTime() + Math.max(options.leaseMs ?? 60_000, 2 * sendTimeoutMs));
  const gate = options.gate ?? new SmsSendingGate();
  if (!gate.allowsSending(now)) return { sent: 0, retried: 0, dead: 0 };

  const due = db
    .select({ id: messageOutbox.id })
    .from(messageOutbox)
    .where(
      and(
        eq(messageOutbox.status, "pending"),
        eq(messageOutbox.channel, "sms"),
        lte(messageOutbox.nextAttemptAt, now),
        // The outer row is named by its table; the inner one by its alias.
        sql`not exists (select 1 from message_outbox earlier
              where earlier.recipient = ${messageOutbox.recipient} and earlier.channel = 'sms'
                and earlier.status = 'pending' and earlier.id < ${messageOutbox.id})`,
      ),
    )
    .orderBy(asc(messageOutbox.nextAttemptAt), asc(messageOutbox.id))
    .limit(gate.batchSize(options.batchSize ?? 50))
    .for("update", { skipLocked: true });
  const claimed = await db
    .update(messageOutbox)
    .set({ nextAttemptAt: leaseUntil })
    .where(inArray(messageOutbox.id, due))
    .returning();
  // `returning` comes in no particular order.
  claimed.sort((a, b) => a.id - b.id);

  const counts: SmsRunCounts = { sent: 0, retried: 0, dead: 0 };
  for (const row of claimed) {
    const attempts = row.attempts + 1;
    let params: Params = row.params;
    /** `pausedUntil`: the gateway failed and sending pauses until then (the gate's pause). */
    const fail = async (reason: string, how: "permanent" | "transient" | { pausedUntil: Date }) => {
      const at = clock.now().getTime();
      const gatewayFailed = typeof how === "object";
      const dead =
        how === "permanent" ||
        (attempts >= maxAttempts &&
          (!gatewayFailed || at - row.createdAt.getTime() >= GATEWAY_OUTAGE_GIVE_UP_MS));
      // A gateway's complaint may quote the message: a secret in it is masked before it is kept or logged.
      const error = maskSecrets(reason, row.template, params);
      const tellAdmin = dead && options.adminPhone && row.template !== "admin_alert";
      // After a gateway failure the gate's pause spaces the tries, not this message's own backoff:
      // once the gateway is back, every waiting message goes within a pause.
      const retryAt = gatewayFailed
        ? how.pausedUntil.getTime() + 1
        : at + retryDelayMs(attempts, baseDelayMs, maxDelayMs);
      await db.transaction(async (tx) => {
        await tx
          .update(messageOutbox)
          .set({
            status: dead ? "dead" : "pending",
            attempts,
            lastError: error.slice(0, 500),
            // A millisecond after the pause: the messages held with this one go first, so that the
            // next probe is another's.
            nextAttemptAt: new Date(retryAt),
          })
          .where(eq(messageOutbox.id, row.id));
        if (tellAdmin) {
          const now = clock.now();
          await enqueueMessage(tx, now, {
            recipient: options.adminPhone!,
            language: "en",
            template: "admin_alert",
            params: {
              text: `an SMS (${row.template} to ${row.recipient}) was given up after ${attempts} tries: ${error.slice(0, 160)}. /failed lists messages given up.`,
            },
            dedupeKey: `sms-dead:${now.toISOString().slice(0, 13)}`,
          });
        }
      });
      if (dead) counts.dead++;
      else counts.retried++;
      options.logger?.warn({ messageId: row.id, attempts, dead, error }, "SMS not delivered");
    };

    // A row is only sent while its lease (and so this worker's claim) surely outlives the send;
    // the rest of the batch goes back to the queue for the next pass.
    if (clock.now().getTime() + sendTimeoutMs >= leaseUntil.getTime()) {
      const rest = claimed.slice(claimed.indexOf(row)).map((r) => r.id);
      await db
        .update(messageOutbox)
        .set({ nextAttemptAt: clock.now() })
        .where(inArray(messageOutbox.id, rest));
      break;
    }
    const to = normalizePhone(row.recipient);
    if (!to) {
      await fail(`invalid phone number: ${row.recipient}`, "permanent");
      continue;
    }
    let text: string | null;
    try {
      params = openSecrets(row.template, row.params);
      text = renderSms(row.language as Language, row.template, params, options);
    } catch (error) {
      // A sealed parameter this key cannot open: counted as a failure, never a pass stopped for good.
      await fail(error instanceof Error ? error.message : String(error), "transient");
      continue;
    }
    if (text === null) {
      await fail(`unknown template: ${row.template}`, "permanent");
      continue;
    }
    let messageId: string;
    try {
      ({ messageId } = await withTimeout(sender.send(to, text), sendTimeoutMs));
    } catch (error) {
      const unsent = () => claimed.slice(claimed.indexOf(row) + 1).map((r) => r.id);
      // The account, not this message, was refused: hold it and the rest of the batch, pause.
      if (error instanceof SmsSendError && error.kind === "account") {
        await holdForAccount(
          options,
          gate,
          { error, text: maskSecrets(error.message, row.template, params) },
          row.id,
          unsent(),
        );
        counts.retried++;
        break;
      }
      // The gateway failed: this message used an attempt, the rest of the batch waits for the pause.
      if (error instanceof SmsSendError && error.kind === "gateway") {
        const pausedUntil = gate.unavailable(clock.now(), error.message, options.logger);
        await fail(error.message, { pausedUntil });
        await holdUntil(db, unsent(), pausedUntil);
        break;
      }
      // A number that opted out will not take a retry either.
      const permanent = error instanceof SmsSendError && error.kind === "recipient";
      await fail(
        error instanceof Error ? error.message : String(error),
        permanent ? "permanent" : "transient",
      );
      continue;
    }
    // Outside the catch above: the gateway took this message, and a failure to record it is no
    // failed send (no attempt used, no pause). It ends the pass, and the row goes out again only
    // once its lease runs out, as after a crash: AT has no idempotency key to prevent that.
    await db
      .update(messageOutbox)
      .set({ status: "done", attempts, lastError: null, providerMessageId: messageId, sentAt: clock.now() })
      .where(eq(messageOutbox.id, row.id));
    counts.sent++;
    gate.succeeded(options.logger);
    if (options.onSent) {
      const shown = renderSms(row.language as Language, row.template, row.params, {
        ...options,
        masked: true,
      });
      options.onSent({ to, text: shown ?? "", messageId });
    }
  }
  return counts;
}

/**
 * The gateway client has no timeout of its own: a hung request must not stop the worker for good.
 * A send that does not answer is the gateway's failure (sending pauses), and its outcome unknown:
 * the gateway may still deliver it, so the retry waits for the pause at least.
 */
function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SmsSendError(`SMS gateway did not answer within ${ms} ms`, "gateway")),
      ms,
    );
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

export interface SmsWorker {
  /** Runs a delivery pass now instead of waiting for the next tick. */
  kick(): void;
  stop(): Promise<void>;
}

/**
 * Polls the outbox every `intervalMs`. A pass that sent anything is followed at once by another: it
 * may have released a recipient's next message (see `deliverDueSms`), as does one that filled its batch.
 */
export function startSmsWorker(options: SmsWorkerOptions & { intervalMs?: number }): SmsWorker {
  const intervalMs = options.intervalMs ?? 2_000;
  const batchSize = options.batchSize ?? 50;
  // One gate across passes: a refused account pauses the worker, not just one pass.
  options = { ...options, gate: options.gate ?? new SmsSendingGate() };
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const tick = () => {
    if (stopped || running) return;
    if (timer) clearTimeout(timer);
    running = (async () => {
      let again = false;
      try {
        const counts = await deliverDueSms(options);
        again = counts.sent > 0 || counts.sent + counts.retried + counts.dead >= batchSize;
      } catch (error) {
        options.logger?.error({ err: error }, "SMS delivery pass failed");
      } finally {
        running = undefined;
        if (!stopped) timer = setTimeout(tick, again ? 0 : intervalMs);
      }
    })();
  };
  timer = setTimeout(tick, 0);

  return {
    kick: () => tick(),
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
