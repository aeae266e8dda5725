import { and, eq, sql } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { mpesaCallbacks } from "../../db/schema/index.ts";

export type CallbackKind = "stk" | "stk_query" | "c2b_validation" | "c2b_confirmation";

/**
 * Records what processing made of an inbound request, in the processing transaction: the inbox row
 * the route stored (`inboxId`) becomes `processed` with its flag, or, for what has no inbox row (a
 * status query's answer), a processed row is added. Either way the record commits with the money.
 */
export async function recordCallbackOutcome(
  tx: Executor,
  now: Date,
  input: {
    inboxId?: number | null;
    kind: CallbackKind;
    reference: string | null;
    body: unknown;
    flag: string | null;
    /** The request's text, for a request stored only now (a validation). */
    raw?: string;
  },
): Promise<void> {
  const at = now.toISOString();
  if (input.inboxId != null) {
    await tx.execute(sql`
      update mpesa_callbacks set status = 'processed', flag = ${input.flag}, reference = ${input.reference},
        body = coalesce(body, ${JSON.stringify(input.body ?? null)}::jsonb), error = null,
        processed_at = ${at}::timestamptz
      where id = ${input.inboxId}::int and status <> 'processed'`);
    return;
  }
  await tx.insert(mpesaCallbacks).values({
    kind: input.kind,
    reference: input.reference,
    body: (input.body ?? null) as Record<string, unknown> | null,
    raw: input.raw ?? null,
    status: "processed",
    flag: input.flag,
    receivedAt: now,
    processedAt: now,
  });
}

/** The same, for many requests in one statement (a batch of callbacks settled together). */
export async function recordCallbackOutcomes(
  tx: Executor,
  now: Date,
  rows: {
    inboxId?: number | null;
    kind: CallbackKind;
    reference: string | null;
    body: unknown;
    flag: string | null;
  }[],
): Promise<void> {
  if (rows.length === 0) return;
  const at = now.toISOString();
  const data = JSON.stringify(
    rows.map((r) => ({
      inbox_id: r.inboxId ?? null,
      kind: r.kind,
      reference: r.reference,
      body: r.body ?? null,
      flag: r.flag,
    })),
  );
  await tx.execute(sql`
    with data as (
      select * from jsonb_to_recordset(${data}::jsonb) as d(inbox_id int, kind text, reference text, body jsonb, flag text)
    ),
    updated as (
      update mpesa_callbacks m set status = 'processed', flag = d.flag, reference = d.reference,
        body = coalesce(m.body, d.body), error = null, processed_at = ${at}::timestamptz
      from data d where d.inbox_id is not null and m.id = d.inbox_id and m.status <> 'processed'
      returning m.id
    )
    insert into mpesa_callbacks (kind, reference, body, status, flag, received_at, processed_at)
    select d.kind, d.reference, d.body, 'processed', d.flag, ${at}::timestamptz, ${at}::timestamptz
    from data d where d.inbox_id is null`);
}

/**
 * Failure callbacks that arrived for this checkout id before the dispatcher had recorded it (M-Pesa
 * can answer faster than the push's own response is stored); the dispatcher settles them again.
 * (A success that came early is matched to its intent at once: see orphans.ts.)
 */
export async function callbacksBeforeSend(db: Executor, checkoutRequestId: string): Promise<unknown[]> {
  const rows = await db
    .select({ body: mpesaCallbacks.body })
    .from(mpesaCallbacks)
    .where(
      and(
        eq(mpesaCallbacks.kind, "stk"),
        eq(mpesaCallbacks.reference, checkoutRequestId),
        eq(mpesaCallbacks.flag, "unknown_checkout"),
      ),
    );
  return rows.map((r) => r.body);
}
