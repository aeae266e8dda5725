import { sql } from "drizzle-orm";
import { CREDITED_TWICE } from "../../billing/intents/receipts.ts";
import { formatKes } from "../../billing/money.ts";
import { type Executor, queryRows } from "../../db/client.ts";
import { counted } from "../../lib/plural.ts";
import { formatDateTime } from "../../messaging/render.ts";
import { maxInboxAttempts, slowRetryEveryMs, slowRetryForMs } from "../../payments/mpesa/inbox-retry.ts";
import { type AdminAlertTarget, alerted, markAlerted, queueAdminAlert } from "./alert-queue.ts";

/**
 * M-Pesa requests that may carry money the service could not record, told to the admins once each:
 * a request whose processing kept failing (tried once an hour from then on, src/payments/inbox.ts),
 * and a confirmation or callback kept unread because its amount or its text was not what M-Pesa
 * sends. Neither is in the unmatched queue (no payment could be recorded), so without this only the
 * logs would show them.
 */

/** Flags of requests processed without recording anything that may have been a payment. */
const unreadFlags = ["amount_out_of_range", "malformed", "malformed_too_deep"];

const kindName: Record<string, string> = {
  stk: "payment prompt callback",
  c2b_confirmation: "paybill confirmation",
};

type Row = {
  id: number;
  kind: string;
  reference: string | null;
  status: string;
  flag: string | null;
  attempts: number;
  error: string | null;
  received_at: Date | string;
};

export async function mpesaRequestAlerts(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { timezone: string; batch: number },
  counts: Record<string, number>,
): Promise<void> {
  // As far back as such a request is still tried: one failing since is told even after a pause
  // of the alerts job, and one tried no more was told when its tries ran out.
  const since = new Date(now.getTime() - slowRetryForMs).toISOString();
  // Its last quick try has ended (it was claimed over a minute ago), not merely begun: a request
  // that goes through at its last try is not told.
  const claimedBefore = new Date(now.getTime() + slowRetryEveryMs - 60_000).toISOString();
  // Two index reads: the unprocessed requests, and the flagged ones; newest first, so those told
  // already never hide a new one.
  const rows = await queryRows<Row>(
    tx,
    sql`(select id, kind, reference, status, flag, attempts, error, received_at from mpesa_callbacks
         where status <> 'processed' and attempts >= ${maxInboxAttempts}::int
           and (retry_lease_until is null or retry_lease_until <= ${claimedBefore}::timestamptz)
           and received_at >= ${since}::timestamptz)
        union all
        (select id, kind, reference, status, flag, attempts, error, received_at from mpesa_callbacks
         where status = 'processed' and flag = any(${`{${unreadFlags.join(",")}}`}::text[])
           and kind in ('stk', 'c2b_confirmation') and received_at >= ${since}::timestamptz)
        order by id desc limit ${options.batch * 5}`,
  );
  const keyOf = (r: Row) => String(r.id);
  const done = await alerted(tx, "mpesa_callback", rows.map(keyOf));
  const fresh = rows
    .filter((r) => !done.has(keyOf(r)))
    .slice(0, options.batch)
    .reverse();
  for (const r of fresh) {
    const what = `M-Pesa ${kindName[r.kind] ?? r.kind} #${r.id}${r.reference ? ` (${r.reference})` : ""}, received ${formatDateTime("en", new Date(r.received_at), options.timezone)}`;
    const text =
      r.status !== "processed"
        ? [
            `⚠️ ${what}, could not be processed: ${counted(r.attempts, "try", "tries")} so far.`,
            `Error: ${(r.error ?? "unknown").slice(0, 300)}`,
            "Any money in it is not credited yet. It is tried again every hour for a week, so once the cause is fixed it goes through by itself.",
          ].join("\n")
        : [
            `⚠️ ${what}, was kept unread: ${r.flag === "amount_out_of_range" ? "its amount is outside what M-Pesa allows" : "its text is not what M-Pesa sends"}.`,
            "Nothing was credited. If it was a payment, find it in M-Pesa's statement and record it; its text is kept in the inbox.",
          ].join("\n");
    counts.queued =
      (counts.queued ?? 0) + (await queueAdminAlert(tx, now, text, { ...options, key: `mpesa:${r.id}` }));
  }
  await markAlerted(
    tx,
    now,
    "mpesa_callback",
    fresh.map((r) => ({ key: keyOf(r), details: { kind: r.kind, reference: r.reference, flag: r.flag } })),
  );
  counts.mpesaRequests = (counts.mpesaRequests ?? 0) + fresh.length;
}

type TwiceRow = {
  audit_id: number;
  receipt: string;
  held_id: number;
  held_amount: number;
  held_account: string | null;
  held_status: string;
  same_id: number;
  same_amount: number;
  same_account: string | null;
  same_status: string;
  at: Date | string;
};

/** How one side of a payment paid out twice went out: credited to an account, or given back. */
const paidOut = (status: string, amount: number, account: string | null): string =>
  status === "applied" ? `${formatKes(amount)} to ${account ?? "?"}` : `${formatKes(amount)} given back`;

/** The command that takes a credit back, when one side of it was credited. */
function chargeBack(r: TwiceRow): string {
  const [status, amount, account] =
    r.held_status === "applied"
      ? [r.held_status, Number(r.held_amount), r.held_account]
      : [r.same_status, Number(r.same_amount), r.same_account];
  if (status !== "applied" || !account) return "";
  return ` (once agreed, /adjust ${account} -${formatKes(amount).replace(/^KES\s*/, "")} <reason> charges the credit back)`;
}

/**
 * A push's payment held as possibly the same money as a paybill payment, credited or given back by an
 * admin all the same, and then shown by the push's own receipt to be that very money, which went out
 * the other way too: the payer's money was paid out twice. Told once each, with both payments, so
 * an admin can settle it with the payer.
 */
export async function creditedTwiceAlerts(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { timezone: string; batch: number },
  counts: Record<string, number>,
): Promise<void> {
  const rows = await queryRows<TwiceRow>(
    tx,
    sql`select a.id as audit_id, a.details->>'receipt' as receipt, a.at,
               held.id as held_id, held.amount_cents as held_amount, hc.account_number as held_account,
               held.status as held_status,
               same.id as same_id, same.amount_cents as same_amount, sc.account_number as same_account,
               same.status as same_status
        from audit_log a
        join payments held on held.id = a.entity_id::int
        left join customers hc on hc.id = held.customer_id
        join payments same on same.id = (a.details->>'samePaymentId')::int
        left join customers sc on sc.id = same.customer_id
        where a.entity = ${CREDITED_TWICE} and a.action in ('payment.credited_twice', 'payment.paid_out_twice')
        order by a.id desc limit ${options.batch * 5}`,
  );
  const keyOf = (r: TwiceRow) => String(r.held_id);
  const done = await alerted(tx, CREDITED_TWICE, rows.map(keyOf));
  const fresh = rows
    .filter((r) => !done.has(keyOf(r)))
    .slice(0, options.batch)
    .reverse();
  for (const r of fresh) {
    const received = formatDateTime("en", new Date(r.at), options.timezone);
    const heldAmount = Number(r.held_amount);
    const text =
      r.held_status === "applied" && r.same_status === "applied"
        ? [
            `⚠️ M-Pesa payment ${r.receipt} is credited twice: ${formatKes(Number(r.same_amount))} to ${r.same_account ?? "?"} as paybill payment #${r.same_id}, and ${formatKes(heldAmount)} to ${r.held_account ?? "?"} as the push payment #${r.held_id} an admin credited while it was held as possibly that same money.`,
            `The push's own receipt, received ${received}, shows it was. Nothing was taken back: once agreed with the payer, /adjust ${r.held_account} -${formatKes(heldAmount).replace(/^KES\s*/, "")} <reason> charges the second credit back.`,
          ].join("\n")
        : [
            `⚠️ M-Pesa payment ${r.receipt} was paid out twice: ${paidOut(r.same_status, Number(r.same_amount), r.same_account)} as paybill payment #${r.same_id}, and ${paidOut(r.held_status, heldAmount, r.held_account)} as the push payment #${r.held_id}, taken out of the queue by an admin while it was held as possibly that same money.`,
            `The push's own receipt, received ${received}, shows it was. Nothing was taken back: settle it with the payer${chargeBack(r)}.`,
          ].join("\n");
    counts.queued =
      (counts.queued ?? 0) +
      (await queueAdminAlert(tx, now, text, { ...options, key: `twice:${r.held_id}` }));
  }
  await markAlerted(
    tx,
    now,
    CREDITED_TWICE,
    fresh.map((r) => ({ key: keyOf(r), details: { receipt: r.receipt, samePaymentId: r.same_id } })),
  );
  counts.creditedTwice = (counts.creditedTwice ?? 0) + fresh.length;
}
