import { sql } from "drizzle-orm";
import { formatKes } from "../../billing/money.ts";
import { type Executor, queryRows } from "../../db/client.ts";
import { formatDateTime } from "../../messaging/render.ts";
import { type AdminAlertTarget, alerted, markAlerted, queueAdminAlert } from "./alert-queue.ts";

/**
 * Payment prompts M-Pesa never answered for: timed out, then asked about for a day
 * (src/payments/mpesa/recovery.ts) with no answer, and no callback came. The payer may have paid:
 * only M-Pesa's statement tells. Told once each, as long as a week after asking stopped.
 */
const ENTITY = "payment_intent_unresolved";
const TOLD_FOR_MS = 7 * 24 * 60 * 60_000;

type Row = {
  id: number;
  amount_cents: number;
  phone: string;
  account_reference: string | null;
  account_number: string | null;
  sent_at: Date | string;
};

export async function unresolvedPushAlerts(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { timezone: string; batch: number },
  counts: Record<string, number>,
): Promise<void> {
  const rows = await queryRows<Row>(
    tx,
    sql`select i.id, i.amount_cents, i.phone, i.account_reference, c.account_number, i.sent_at
        from payment_intents i left join customers c on c.id = i.customer_id
        where i.status = 'timed_out'
          and i.unresolved_at >= ${new Date(now.getTime() - TOLD_FOR_MS).toISOString()}::timestamptz
        order by i.id desc limit ${options.batch * 5}`,
  );
  const keyOf = (r: Row) => String(r.id);
  const done = await alerted(tx, ENTITY, rows.map(keyOf));
  const fresh = rows
    .filter((r) => !done.has(keyOf(r)))
    .slice(0, options.batch)
    .reverse();
  for (const r of fresh) {
    const account = r.account_number ? ` for ${r.account_number}` : "";
    const text = [
      `⚠️ M-Pesa never said whether payment prompt #${r.id} was paid: ${formatKes(Number(r.amount_cents))} from ${r.phone}${account}, sent ${formatDateTime("en", new Date(r.sent_at), options.timezone)}, account shown "${r.account_reference ?? "?"}".`,
      `Its callback never came and M-Pesa's status query gave no answer for a day. Nothing was credited: if M-Pesa's statement shows the payment, credit it with its receipt: /prompt_paid #${r.id} <receipt>.`,
    ].join("\n");
    counts.queued =
      (counts.queued ?? 0) +
      (await queueAdminAlert(tx, now, text, { ...options, key: `unresolved:${r.id}` }));
  }
  await markAlerted(
    tx,
    now,
    ENTITY,
    fresh.map((r) => ({ key: keyOf(r), details: { amountCents: Number(r.amount_cents), phone: r.phone } })),
  );
  counts.unresolvedPushes = (counts.unresolvedPushes ?? 0) + fresh.length;
}
