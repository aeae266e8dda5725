import { sql } from "drizzle-orm";
import { Gauge, type Registry } from "prom-client";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import { messageChannels, outboxStatuses } from "../db/schema/outbox.ts";
import { intentStatuses } from "../db/schema/payment-intents.ts";

/** Provisioning rows that belong to no router (e.g. a profile for every router) are labelled so. */
export const noRouterLabel = "all";
const paymentStatuses = ["applied", "unmatched"] as const;

type Row = {
  kind: string;
  a: string | null;
  b: string | null;
  n: number | string;
  oldest: number | string | null;
};

/**
 * Every figure in one set-based statement: pending and dead provisioning rows per router (every
 * router listed, with nothing queued as 0), messages by channel and status, payments and intents by
 * status, job runs by job and status. `oldest` is the epoch of the oldest row of its group.
 */
const figures = sql`
  select 'provisioning' as kind, r.name as a, o.status as b, count(o.id)::int as n,
         extract(epoch from min(o.created_at))::float8 as oldest
    from routers r
    full join (select id, router_id, status, created_at from provisioning_outbox
                where status in ('pending', 'dead')) o on o.router_id = r.id
   group by r.name, o.status
  union all
  select 'message', channel, status, count(*)::int, null from message_outbox group by channel, status
  union all
  select 'payment', status, null, count(*)::int, null from payments group by status
  union all
  select 'intent', status, null, count(*)::int, null from payment_intents group by status
  union all
  select 'job', job, status, count(*)::int, null from job_runs group by job, status`;

export interface DatabaseGauges {
  /** Reads the figures and sets the gauges; throws (gauges emptied, `database_up` 0) when the database fails or is too slow. */
  refresh(): Promise<void>;
}

export function databaseGauges(
  registry: Registry,
  options: { db: Db; clock: Clock; timeoutMs: number },
): DatabaseGauges {
  const registers = [registry];
  const pending = new Gauge({
    name: "tandao_provisioning_pending",
    help: `Provisioning commands waiting to be delivered, per router ("${noRouterLabel}": no single router)`,
    labelNames: ["router"],
    registers,
  });
  const oldestPending = new Gauge({
    name: "tandao_provisioning_oldest_pending_age_seconds",
    help: "Age of the oldest pending provisioning command, per router (0: none pending)",
    labelNames: ["router"],
    registers,
  });
  const dead = new Gauge({
    name: "tandao_provisioning_dead",
    help: "Provisioning commands given up after their last attempt, per router",
    labelNames: ["router"],
    registers,
  });
  const messages = new Gauge({
    name: "tandao_messages",
    help: "Outbound messages (SMS and chat) by channel and status",
    labelNames: ["channel", "status"],
    registers,
  });
  const payments = new Gauge({
    name: "tandao_payments",
    help: "Payments received, by status",
    labelNames: ["status"],
    registers,
  });
  const intents = new Gauge({
    name: "tandao_payment_intents",
    help: "STK push payment intents, by status",
    labelNames: ["status"],
    registers,
  });
  const jobRuns = new Gauge({
    name: "tandao_job_runs",
    help: "Recorded runs of each scheduled job (all statuses), a total kept in the database",
    labelNames: ["job"],
    registers,
  });
  const jobFailures = new Gauge({
    name: "tandao_job_failures",
    help: "Recorded failed runs of each scheduled job, a total kept in the database",
    labelNames: ["job"],
    registers,
  });
  const up = new Gauge({
    name: "tandao_metrics_database_up",
    help: "1 when the database answered the last scrape's query in time, else 0 (its figures are then absent)",
    registers,
  });
  const all = [pending, oldestPending, dead, messages, payments, intents, jobRuns, jobFailures];

  async function read(): Promise<Row[]> {
    // On PostgreSQL the statement is cut off server-side too, so a slow scrape never piles up.
    return options.db.transaction(async (tx) => {
      await tx.execute(
        sql.raw(`set local statement_timeout = ${Math.max(1, Math.round(options.timeoutMs))}`),
      );
      return queryRows<Row>(tx, figures);
    });
  }

  function set(rows: Row[]): void {
    const routers = new Map<string, { pending: number; dead: number; oldest: number | null }>([
      [noRouterLabel, { pending: 0, dead: 0, oldest: null }],
    ]);
    const jobs = new Map<string, { runs: number; failures: number }>();
    for (const gauge of all) gauge.reset();
    for (const status of outboxStatuses)
      for (const channel of messageChannels) messages.set({ channel, status }, 0);
    for (const status of paymentStatuses) payments.set({ status }, 0);
    for (const status of intentStatuses) intents.set({ status }, 0);
    for (const row of rows) {
      const n = Number(row.n);
      if (row.kind === "provisioning") {
        // Every router has its series, 0 when nothing is queued for it.
        const name = row.a ?? noRouterLabel;
        const router = routers.get(name) ?? { pending: 0, dead: 0, oldest: null };
        routers.set(name, router);
        if (row.b === "pending") {
          router.pending = n;
          router.oldest = row.oldest === null ? null : Number(row.oldest);
        } else if (row.b === "dead") router.dead = n;
      } else if (row.kind === "message") messages.set({ channel: row.a ?? "", status: row.b ?? "" }, n);
      else if (row.kind === "payment") payments.set({ status: row.a ?? "" }, n);
      else if (row.kind === "intent") intents.set({ status: row.a ?? "" }, n);
      else if (row.kind === "job") {
        const job = jobs.get(row.a ?? "") ?? { runs: 0, failures: 0 };
        jobs.set(row.a ?? "", job);
        job.runs += n;
        if (row.b === "failed") job.failures += n;
      }
    }
    const now = options.clock.now().getTime() / 1000;
    for (const [router, figures] of routers) {
      pending.set({ router }, figures.pending);
      dead.set({ router }, figures.dead);
      oldestPending.set({ router }, figures.oldest === null ? 0 : Math.max(0, now - figures.oldest));
    }
    for (const [job, figures] of jobs) {
      jobRuns.set({ job }, figures.runs);
      jobFailures.set({ job }, figures.failures);
    }
  }

  return {
    async refresh() {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("metrics query timed out")), options.timeoutMs + 250);
      });
      try {
        const query = read();
        query.catch(() => {}); // a late failure after the timeout is not an unhandled rejection
        set(await Promise.race([query, timeout]));
        up.set(1);
      } catch (error) {
        for (const gauge of all) gauge.reset();
        up.set(0);
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
