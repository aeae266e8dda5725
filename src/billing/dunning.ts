import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { intArray } from "../db/params.ts";
import type { Actor, BillingContext } from "./context.ts";
import { lockCustomerSet } from "./money-lock.ts";

/** Pure rule: which reminder steps exist, e.g. [-3, -1, 0] days → remind:-3d, remind:-1d, remind:0d. */
export function reminderSteps(offsetsDays: number[]): { step: string; days: number }[] {
  return [...new Set(offsetsDays)].sort((a, b) => a - b).map((days) => ({ step: `remind:${days}d`, days }));
}

/**
 * Sends payment reminders for open invoices of active subscriptions at the configured offsets from
 * the due date. Each (invoice, step) is recorded once under a unique key, so a second run, or two
 * instances running at once, send nothing twice. When the job was late and several steps are due,
 * only the latest is sent; the earlier ones are recorded as skipped.
 *
 * A customer gets one reminder per run, however many of their invoices reached a step: a plan
 * change's top-up falls due with the renewal it tops up, and two SMS with two amounts leave the
 * subscriber guessing what to pay (a payment goes to the account's bills oldest due first anyway).
 * The rule: the SMS names the earliest due date among the invoices whose step is sent now, and the
 * sum of what is still open (amount less what is allocated to it, as one invoice's reminder said)
 * on every bill of service due by the end of that day, in the ISP's time zone (the SMS names a day:
 * two subscriptions renewing hours apart are both in it), a suspended subscription's included: the
 * payment pays that one first, and the bill reminded about would stay unpaid. An invoice due on a later
 * day is left out of that amount, its step taken all the same: its next step names it (only a job
 * stopped for a day could let a later day's last step go by unnamed).
 */
export async function sendRemindersInTx(tx: Executor, ctx: BillingContext, _actor: Actor) {
  const now = ctx.clock.now();
  const at = sql`${now.toISOString()}::timestamptz`;
  const steps = reminderSteps(ctx.settings.reminderDays);
  if (steps.length === 0) return { reminded: 0, skipped: 0 };
  // Who owes is read after the money lock (money-lock.ts), so a payment being credited right now is
  // waited for and seen, instead of being reminded about. Only the customers locked are read: one
  // whose bill became due after the lock was taken waits for the next run.
  const { members } = await lockCustomerSet(
    tx,
    sql`select i.customer_id from invoices i where i.status = 'open' and i.kind in ('recurring', 'proration')
        and i.due_at + make_interval(days => ${Math.min(...steps.map((s) => s.days))}::int) <= ${at}`,
  );
  const names = `{${steps.map((s) => s.step).join(",")}}`;
  const days = `{${steps.map((s) => s.days).join(",")}}`;
  const rows = await queryRows<{ reminded: number; skipped: number }>(
    tx,
    sql`
    with offsets as (
      select * from unnest(${names}::text[], ${days}::int[]) as o(step, days)
    ),
    candidates as (
      select i.id as invoice_id, i.customer_id, i.due_at, o.step, o.days,
        row_number() over (partition by i.id order by o.days desc) as latest,
        (select extract(epoch from r.taken_at)::bigint from dunning_steps r
          where r.invoice_id = i.id and r.step = ${RESUMED_STEP}) as resumed_epoch
      from invoices i
      join subscriptions s on s.id = i.subscription_id and s.status = 'active'
      join offsets o on i.due_at + make_interval(days => o.days) <= ${at}
      where i.status = 'open' and i.kind in ('recurring', 'proration') and i.customer_id in (${members})
        and not exists (select 1 from dunning_steps d where d.invoice_id = i.id and d.step = 'suspend')
    ),
    taken as (
      insert into dunning_steps (invoice_id, step, sent, taken_at)
      select invoice_id, step, case when latest = 1 then 1 else 0 end, ${at} from candidates
      on conflict (invoice_id, step) do nothing
      returning invoice_id, step, sent
    ),
    -- Per customer, the earliest due of the invoices whose step is sent now: the day the SMS names.
    reminders as (
      select distinct on (c.customer_id) c.customer_id, c.invoice_id, c.step, c.days, c.due_at, c.resumed_epoch
      from taken t join candidates c on c.invoice_id = t.invoice_id and c.step = t.step
      where t.sent = 1
      order by c.customer_id, c.due_at, c.invoice_id
    ),
    -- Every open bill of service due by the end of that day, whichever subscription it is for: a
    -- payment pays them oldest first (ledger.ts), so a suspended subscription's unpaid bill takes
    -- the money before the one reminded about.
    owed as (
      select r.customer_id, sum(i.amount_cents - i.paid_cents) as amount
      from reminders r
      join invoices i on i.customer_id = r.customer_id and i.status = 'open' and i.kind <> 'manual'
        and (i.due_at at time zone ${ctx.settings.timezone})::date <= (r.due_at at time zone ${ctx.settings.timezone})::date
      group by r.customer_id
    ),
    messages as (
      insert into message_outbox (channel, recipient, language, template, params, dedupe_key, next_attempt_at, created_at)
      select 'sms', cu.phone, cu.language, 'invoice_reminder',
        jsonb_build_object('amountCents', ow.amount::bigint, 'dueAt', to_char(r.due_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
          'account', cu.account_number, 'days', -r.days),
        -- Keyed by the due date too: a bill moved by free days is reminded again for its new date;
        -- and by when its dunning was resumed: a bill owed again is reminded again.
        'dunning:' || r.invoice_id || ':' || r.step || ':' || extract(epoch from r.due_at)::bigint
          || coalesce(':' || r.resumed_epoch, ''), ${at}, ${at}
      from reminders r
      join owed ow on ow.customer_id = r.customer_id
      join customers cu on cu.id = r.customer_id
      on conflict (dedupe_key) do nothing
    )
    select (select count(*) from reminders)::int as reminded, (select count(*) from taken where sent = 0)::int as skipped`,
  );
  return { reminded: Number(rows[0]?.reminded ?? 0), skipped: Number(rows[0]?.skipped ?? 0) };
}

/** Recorded on an unpaid invoice when an admin brings back service that dunning suspended. */
const RESUMED_STEP = "resumed";

/**
 * Suspends active subscriptions whose invoice is still unpaid a grace period after it fell due (or
 * after it was issued, when that was later).
 * The `suspend` step is unique per invoice, so a rerun never suspends (or texts) twice; payment
 * later restores the service (see restore.ts). Service brought back without payment starts the
 * invoice's dunning over (`restartDunningInTx`), so it is suspended again if it stays unpaid.
 */
export async function suspendOverdueInTx(tx: Executor, ctx: BillingContext, _actor: Actor) {
  const now = ctx.clock.now();
  const at = sql`${now.toISOString()}::timestamptz`;
  const graceStart = sql`${new Date(now.getTime() - ctx.settings.graceDays * 86_400_000).toISOString()}::timestamptz`;
  // As for reminders: a payment being credited right now is waited for, and its customer kept on.
  const { members } = await lockCustomerSet(
    tx,
    sql`select i.customer_id from invoices i where i.status = 'open' and i.kind in ('recurring', 'proration')
        and i.due_at <= ${graceStart} and i.issued_at <= ${graceStart}`,
  );
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`
    with overdue as (
      select distinct on (s.id) s.id as subscription_id, s.router_id, i.id as invoice_id, i.customer_id
      from invoices i
      join subscriptions s on s.id = i.subscription_id and s.status = 'active'
      where i.status = 'open' and i.kind in ('recurring', 'proration') and i.due_at <= ${graceStart}
        -- A bill issued after its due date (the service was down when it fell due, or it was imported)
        -- gets its grace period from when it was issued: nobody is cut off by a bill they never saw.
        and i.issued_at <= ${graceStart}
        and i.customer_id in (${members})
        -- An admin brought service back while this was unpaid: a grace period from then.
        and not exists (select 1 from dunning_steps r where r.invoice_id = i.id and r.step = ${RESUMED_STEP}
                          and r.taken_at > ${graceStart})
      order by s.id, i.due_at
    ),
    taken as (
      insert into dunning_steps (invoice_id, step, sent, taken_at)
      select invoice_id, 'suspend', 1, ${at} from overdue
      on conflict (invoice_id, step) do nothing
      returning invoice_id
    ),
    suspended as (
      update subscriptions s set status = 'suspended', suspended_reason = 'dunning'
      from overdue o join taken t on t.invoice_id = o.invoice_id
      where s.id = o.subscription_id and s.status = 'active'
      returning s.id, s.router_id, s.customer_id
    ),
    provisioning as (
      insert into provisioning_outbox (router_id, subscription_id, action, payload, next_attempt_at, created_at)
      select router_id, id, 'suspend', '{}'::jsonb, ${at}, ${at} from suspended
    ),
    owed as (
      select l.customer_id, -sum(l.amount_cents) as amount
      from ledger_entries l where l.customer_id in (select customer_id from suspended) group by l.customer_id
    ),
    messages as (
      insert into message_outbox (channel, recipient, language, template, params, dedupe_key, next_attempt_at, created_at)
      select 'sms', cu.phone, cu.language, 'suspended',
        jsonb_build_object('amountCents', greatest(coalesce(ow.amount, 0), 0), 'account', cu.account_number),
        'dunning:suspend:' || s.id || ':' || ${now.toISOString()}, ${at}, ${at}
      from suspended s join customers cu on cu.id = s.customer_id left join owed ow on ow.customer_id = s.customer_id
      on conflict (dedupe_key) do nothing
    ),
    audited as (
      insert into audit_log (actor_kind, actor_id, action, entity, entity_id, reason, details, at)
      select 'system', 'dunning', 'subscription.suspended', 'subscription', s.id::text, 'unpaid after grace period', '{}'::jsonb, ${at}
      from suspended s
    )
    select count(*)::int as n from suspended`,
  );
  return { suspended: Number(rows[0]?.n ?? 0) };
}

export function sendReminders(ctx: BillingContext, actor: Actor) {
  return ctx.db.transaction((tx) => sendRemindersInTx(tx, ctx, actor));
}

export function suspendOverdue(ctx: BillingContext, actor: Actor) {
  return ctx.db.transaction((tx) => suspendOverdueInTx(tx, ctx, actor));
}

/**
 * The dunning of these unpaid invoices starts over. `moved`: their due date changed (free days),
 * so reminders and the suspension are due again from the new date. `resumed`: an admin brought
 * service back while they are unpaid, so they may be suspended again, after a grace period from now.
 * `owedAgain`: paid, they are owed again (a credit that paid them taken back), so the customer is
 * reminded again, and suspended after a grace period from now.
 */
export async function restartDunningInTx(
  tx: Executor,
  invoiceIds: readonly number[],
  how: { moved: true } | { resumed: Date } | { owedAgain: Date },
): Promise<void> {
  if (invoiceIds.length === 0) return;
  const ids = sql`(select unnest(${intArray(invoiceIds)}))`;
  if ("moved" in how) {
    // An admin's resume keeps its grace period: only the steps counted from the old date go.
    await tx.execute(sql`delete from dunning_steps where invoice_id in ${ids} and step <> ${RESUMED_STEP}`);
    return;
  }
  const resumedAt = "resumed" in how ? how.resumed : how.owedAgain;
  const at = sql`${resumedAt.toISOString()}::timestamptz`;
  // Owed again, its reminders go again too (their texts are keyed by when it was resumed, see
  // sendRemindersInTx); an admin's resume only lifts the suspension step.
  const cleared = "owedAgain" in how ? sql`step <> ${RESUMED_STEP}` : sql`step = 'suspend'`;
  await tx.execute(
    sql`with cleared as (delete from dunning_steps where invoice_id in ${ids} and ${cleared})
        insert into dunning_steps (invoice_id, step, sent, taken_at)
        select id, ${RESUMED_STEP}, 0, ${at} from invoices where id in ${ids}
        on conflict (invoice_id, step) do update set taken_at = excluded.taken_at`,
  );
}
