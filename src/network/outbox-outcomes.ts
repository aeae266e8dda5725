import { type SQL, sql } from "drizzle-orm";
import { enqueueMessage } from "../billing/outbox.ts";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { RouterUnavailableError } from "./connection.ts";
import type { ClaimedRow } from "./outbox-claim.ts";

/**
 * What became of the rows a provisioning worker (worker.ts) delivered, written back to
 * `provisioning_outbox` in a few set-based statements: done, retried after a back-off, given up (with
 * an SMS to the admin), or handed back untouched.
 */

const at = (d: Date) => sql`${d.toISOString()}::timestamptz`;

/** The lease a claim took on a row (`claimed_until`, as outbox-claim.ts wrote it). */
const leaseOf = (row: ClaimedRow) => at(new Date(row.leaseEndsAt));

const leasesOf = (rows: readonly ClaimedRow[]) =>
  sql.join(
    rows.map((r) => sql`(${r.id}::int, ${leaseOf(r)})`),
    sql`, `,
  );

/**
 * An outcome is written only while the row still carries the lease its delivery took: a delivery
 * that outlived its lease (a stalled router) finds the row claimed again by another worker, whose
 * lease and outcome it must not overwrite (that worker delivers the row again; the calls are
 * idempotent). A lease that ran out with no one taking the row over is still the row's.
 */
const stillOurs = sql`o.claimed_until = v.lease`;

/** A row whose delivery failed, with the session drops it still owes (driver.ts, `OwedDrops`). */
export interface Failure {
  row: ClaimedRow;
  error: unknown;
  owedDrops: string[];
}

export interface OutcomeOptions {
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  adminPhone?: string;
}

export class OutboxOutcomes {
  constructor(
    private readonly deps: { db: Db; clock: Clock; logger?: Logger },
    private readonly options: OutcomeOptions,
  ) {}

  async succeeded(rows: ClaimedRow[]): Promise<void> {
    if (rows.length === 0) return;
    const now = this.deps.clock.now();
    for (const chunk of chunks(rows, 1_000)) {
      await this.deps.db.execute(sql`
        update provisioning_outbox o set status = 'done', done_at = ${at(now)}, claimed_until = null, last_error = null
        from (values ${leasesOf(chunk)}) as v(id, lease)
        where o.id = v.id and ${stillOurs}`);
    }
  }

  async failed(failures: Failure[]): Promise<void> {
    if (failures.length === 0) return;
    const now = this.deps.clock.now();
    const retry: Array<{
      row: ClaimedRow;
      message: string;
      next: Date;
      uncount: number;
      drops: string[];
    }> = [];
    const giveUps: Array<{ row: ClaimedRow; message: string; drops: string[] }> = [];
    for (const { row, error, owedDrops: drops } of failures) {
      const message = (error instanceof Error ? error.message : String(error)).slice(0, 500);
      // A router that is down delays work but never loses it: an unreachable router does not use
      // up the row's attempts (only what the router refuses, or never finishes in time, does), and
      // the row waits at the longest back-off, or until the router is seen again (the prober;
      // routerRecovered, on the next connection made after a loss).
      if (error instanceof RouterUnavailableError) {
        retry.push({
          row,
          message,
          next: new Date(now.getTime() + this.options.backoffMaxMs),
          uncount: 1,
          drops,
        });
        continue;
      }
      // A delivery cut short by its lease (lease-guard.ts: a router too slow to answer before the
      // lease ends) uses up its attempt like any other failure: a router that stalls every delivery
      // must end in a given-up row and an alert, not in retries no one sees. (Rows not started in
      // time are handed back without one: `release`.)
      if (row.attempts >= this.options.maxAttempts) {
        giveUps.push({ row, message, drops });
        continue;
      }
      const delay = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** (row.attempts - 1));
      const jitter = Math.floor(Math.random() * Math.min(1_000, delay / 4));
      retry.push({ row, message, next: new Date(now.getTime() + delay + jitter), uncount: 0, drops });
    }
    for (const { row, message, drops } of giveUps) {
      try {
        await this.giveUp(row, message, drops, now);
      } catch (error) {
        // Not given up (its alert could not be queued, say): the row stays owed and is given up at
        // its next failure; the other rows of the batch still get their outcomes.
        this.deps.logger?.error({ err: error, outboxId: row.id }, "giving up a provisioning row failed");
        retry.push({
          row,
          message,
          next: new Date(now.getTime() + this.options.backoffMaxMs),
          uncount: 0,
          drops,
        });
      }
    }
    for (const chunk of chunks(retry, 1_000)) {
      const values = sql.join(
        chunk.map(
          (r) =>
            sql`(${r.row.id}::int, ${leaseOf(r.row)}, ${r.message}::text, ${r.next.toISOString()}::timestamptz, ${r.uncount}::int, ${JSON.stringify(r.drops)}::jsonb)`,
        ),
        sql`, `,
      );
      // Session drops still owed (driver.ts, OwedDrops) are kept on the row for its retry; those of a
      // row another worker holds now go to a row of their own (requeuedDrops).
      await this.deps.db.execute(sql`
        with v(id, lease, message, next, uncount, drops) as (values ${values}),
        kept as (
          update provisioning_outbox o set claimed_until = null, last_error = v.message, next_attempt_at = v.next,
            attempts = o.attempts - v.uncount,
            payload = case when jsonb_array_length(v.drops) = 0 then o.payload - 'dropSessions'
              else jsonb_set(o.payload, '{dropSessions}', v.drops) end
          from v
          where o.id = v.id and ${stillOurs}
          returning o.id
        )
        ${requeuedDrops(now, sql`(select v.id, v.drops from v where v.id not in (select id from kept))`)}`);
    }
  }

  /** Rows not started in time go back to the queue as they were, due now. */
  async release(rows: ClaimedRow[]): Promise<void> {
    if (rows.length === 0) return;
    const now = this.deps.clock.now();
    for (const chunk of chunks(rows, 1_000)) {
      await this.deps.db.execute(sql`
        update provisioning_outbox o set claimed_until = null, attempts = o.attempts - 1, next_attempt_at = ${at(now)}
        from (values ${leasesOf(chunk)}) as v(id, lease)
        where o.id = v.id and ${stillOurs}`);
    }
  }

  /**
   * The session drops the row still owes stay on it (driver.ts, OwedDrops): the next delivery of its
   * target makes them (outbox-claim.ts), or the row's own retry by the admin.
   */
  private async giveUp(row: ClaimedRow, message: string, drops: string[], now: Date): Promise<void> {
    const givenUp = await this.deps.db.transaction(async (tx) => {
      const given = await queryRows<{ id: number }>(
        tx,
        sql`
        update provisioning_outbox o set status = 'dead', claimed_until = null, last_error = ${message}, done_at = ${at(now)},
          payload = case when ${drops.length}::int = 0 then o.payload - 'dropSessions'
            else jsonb_set(o.payload, '{dropSessions}', ${JSON.stringify(drops)}::jsonb) end
        from (values ${leasesOf([row])}) as v(id, lease)
        where o.id = v.id and ${stillOurs}
        returning o.id`,
      );
      // Another worker holds the row now: its outcome is the one that counts, but not the drops
      // this delivery still owes (that worker read the row before they were owed).
      if (given.length === 0) {
        await tx.execute(
          requeuedDrops(now, sql`(select ${row.id}::int as id, ${JSON.stringify(drops)}::jsonb as drops)`),
        );
        return false;
      }
      if (this.options.adminPhone) {
        const hour = now.toISOString().slice(0, 13);
        await enqueueMessage(tx, now, {
          recipient: this.options.adminPhone,
          language: "en",
          template: "admin_alert",
          params: {
            text: `Router provisioning gave up after ${row.attempts} attempts (${row.action}${
              row.subscriptionId ? ` subscription ${row.subscriptionId}` : ""
            }${row.voucherId ? ` voucher ${row.voucherId}` : ""}${
              row.routerId ? ` on router ${row.routerId}` : ""
            }): ${message}. Further failures this hour are in the provisioning queue.`,
          },
          // One alert per router and hour: an outage must not flood the admin's phone.
          dedupeKey: `provisioning-dead:${row.routerId ?? "all"}:${hour}`,
        });
      }
      return true;
    });
    if (givenUp) this.deps.logger?.error({ outboxId: row.id, err: message }, "provisioning row given up");
  }
}

/**
 * For rows (`owing`: id, drops) whose delivery owes session drops but which another worker holds now:
 * a row of the same target and action carrying them, due now. It waits behind that worker's lease
 * (outbox-claim.ts), then delivers the target again, which changes nothing else, and makes the drops
 * (or hands them to a newer row of the target, as a superseded row does).
 */
function requeuedDrops(now: Date, owing: SQL) {
  return sql`insert into provisioning_outbox
      (router_id, subscription_id, voucher_id, action, payload, next_attempt_at, created_at)
    select p.router_id, p.subscription_id, p.voucher_id, p.action,
      jsonb_set(p.payload - 'dropSessions', '{dropSessions}', w.drops), ${at(now)}, ${at(now)}
    from ${owing} as w join provisioning_outbox p on p.id = w.id
    where jsonb_array_length(w.drops) > 0`;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
