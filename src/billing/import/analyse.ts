import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { textArray } from "../../db/params.ts";
import { checkPhone, DEFAULT_SERVED_COUNTRIES } from "../../lib/phone.ts";
import { ACCOUNT_NUMBER } from "../accounts.ts";
import type { BillingSettings } from "../context.ts";
import { periodBoundary } from "../periods.ts";
import {
  type Analysis,
  centsToKes,
  IMPORT_STATUSES,
  type ImportColumn,
  type ImportOptions,
  type ImportRow,
  type ImportStatus,
  localMidnight,
  type NewRow,
  parseBalance,
  type RawRecord,
  type RowProblem,
  readCsv,
} from "./format.ts";

/** The dry run: each row of the file checked, and compared with what the database holds. */

// ---------------------------------------------------------------------------------------------
// What the database holds

export interface ExistingCustomer extends Record<string, unknown> {
  id: number;
  account: string;
  name: string;
  phone: string;
  plan: string | null;
  status: string | null;
  expires: string | null;
  router: string | null;
  username: string | null;
  balance: string | number;
}

/**
 * Customers in import form: each with their latest subscription that is not cancelled, the local
 * date of its period end, and the ledger balance. `where` narrows the customers (`c` is customers).
 * (A `distinct on` rather than a lateral `order by id desc limit 1`: the planner walks the primary
 * key backwards for the latter, once per customer, right after a bulk import.)
 */
export function customersInImportForm(tx: Executor, timeZone: string, where: ReturnType<typeof sql>) {
  return queryRows<ExistingCustomer>(
    tx,
    sql`select c.id, c.account_number as account, c.name, c.phone,
          p.code as plan, s.status, r.name as router, s.network_username as username,
          -- The date, and the time of day when the period does not end at midnight: an export
          -- imported again gives the subscriber the same end of service, not that day's midnight.
          case when (s.current_period_end at time zone ${timeZone})::time = '00:00'
            then to_char(s.current_period_end at time zone ${timeZone}, 'YYYY-MM-DD')
            else to_char(s.current_period_end at time zone ${timeZone}, 'YYYY-MM-DD HH24:MI') end as expires,
          -- What they owe or hold, less a pending subscription's open first-period invoice (as the
          -- import reads a balance: it issues that invoice itself).
          (coalesce((select sum(l.amount_cents) from ledger_entries l where l.customer_id = c.id), 0)
            + coalesce((select sum(i.amount_cents) from invoices i
                 where s.status = 'pending' and i.subscription_id = s.id and i.kind = 'recurring'
                   and i.status = 'open' and i.period_start = s.current_period_start), 0))::text as balance
        from customers c
        left join (
          select distinct on (s.customer_id) s.* from subscriptions s
          where s.status <> 'cancelled' and s.customer_id in (select c.id from customers c where ${where})
          order by s.customer_id, s.id desc
        ) s on s.customer_id = c.id
        left join plans p on p.id = s.plan_id
        left join routers r on r.id = s.router_id
        where ${where}
        order by c.id`,
  );
}

// ---------------------------------------------------------------------------------------------
// The analysis (dry run)

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export async function analyse(
  tx: Executor,
  settings: BillingSettings,
  input: string | Uint8Array,
  options: ImportOptions,
): Promise<Analysis> {
  const served = options.servedCountries ?? DEFAULT_SERVED_COUNTRIES;
  const { records, fileError } = readCsv(input, options.maxBytes, options.maxRows);
  const empty = { rows: 0, new: 0, unchanged: 0, refused: 0 };
  if (fileError) return { report: { fileError, rows: [], counts: empty, committed: false }, toCreate: [] };

  const planRows = await queryRows<{
    id: number;
    code: string;
    period_unit: "months" | "days" | "hours";
    period_count: number;
  }>(tx, sql`select id, code, period_unit, period_count from plans`);
  const plansByCode = new Map(planRows.map((p) => [p.code, p]));
  const plansByLower = new Map(planRows.map((p) => [p.code.toLowerCase(), p]));
  const routerRows = await queryRows<{ id: number; name: string }>(tx, sql`select id, name from routers`);
  const routersByName = new Map(routerRows.map((r) => [r.name, Number(r.id)]));

  // Dates repeat a lot in a book of customers, and each conversion asks Intl for the zone's offset.
  const midnights = new Map<string, Date | null>();
  const midnight = (text: string) => {
    if (!midnights.has(text)) midnights.set(text, localMidnight(text, settings.timezone));
    return midnights.get(text) ?? null;
  };
  const boundaries = new Map<string, Date>();
  const boundary = (end: Date, plan: (typeof planRows)[number], n: -1 | 1) => {
    const key = `${end.getTime()}:${plan.id}:${n}`;
    let at = boundaries.get(key);
    if (!at) {
      at = periodBoundary(end, plan.period_unit, Number(plan.period_count), n, settings.timezone);
      boundaries.set(key, at);
    }
    return at;
  };

  // First pass: each field on its own.
  interface Checked {
    record: RawRecord;
    problems: RowProblem[];
    accountKey: string;
    phone: string | null;
    username: string;
    row: Omit<NewRow, "line"> | null;
  }
  const checked: Checked[] = [];
  for (const record of records) {
    const v = record.values;
    const problems: RowProblem[] = [];
    if (record.problem) {
      checked.push({
        record,
        problems: [{ kind: "bad_row", message: record.problem }],
        accountKey: "",
        phone: null,
        username: "",
        row: null,
      });
      continue;
    }
    if (!ACCOUNT_NUMBER.test(v.account) || /^TDW/i.test(v.account))
      problems.push({ kind: "bad_account", message: `bad account number "${v.account}"` });
    if (!v.name || v.name.length > 100)
      problems.push({ kind: "bad_name", message: "a name is required (at most 100 characters)" });
    const verdict = checkPhone(v.phone, served);
    let phone: string | null = null;
    if (verdict.kind === "invalid") problems.push({ kind: "bad_phone", message: `bad phone "${v.phone}"` });
    else if (verdict.kind === "foreign")
      problems.push({
        kind: "foreign_phone",
        message: `phone ${verdict.e164} is not in a served country (${served.join(", ")})`,
      });
    else phone = verdict.e164;
    const plan = plansByCode.get(v.plan) ?? plansByLower.get(v.plan.toLowerCase());
    if (!plan) problems.push({ kind: "unknown_plan", message: `unknown plan "${v.plan}"` });
    const status = v.status.toLowerCase();
    if (!(IMPORT_STATUSES as readonly string[]).includes(status))
      problems.push({
        kind: "bad_status",
        message: `bad status "${v.status}" (active, suspended or pending)`,
      });
    const periodEnd = midnight(v.expires);
    if (!periodEnd)
      problems.push({
        kind: "bad_date",
        message: `bad date "${v.expires}" (YYYY-MM-DD, or YYYY-MM-DD HH:MM)`,
      });
    let routerId: number | null = null;
    if (v.router) {
      routerId = routersByName.get(v.router) ?? null;
      if (routerId === null)
        problems.push({ kind: "unknown_router", message: `unknown router "${v.router}"` });
    }
    if (v.username && !USERNAME.test(v.username))
      problems.push({ kind: "bad_username", message: `bad username "${v.username}"` });
    const balanceCents = parseBalance(v.balance);
    if (balanceCents === null)
      problems.push({ kind: "bad_amount", message: `bad amount "${v.balance}" (KES, e.g. -1500.50)` });
    const username = v.username || v.account.toLowerCase();
    checked.push({
      record,
      problems,
      accountKey: v.account.toUpperCase(),
      phone,
      username,
      row:
        problems.length === 0 && plan && periodEnd && phone && balanceCents !== null
          ? {
              account: v.account,
              name: v.name,
              phone,
              planId: Number(plan.id),
              routerId,
              status: status as ImportStatus,
              periodEnd,
              // The period ending at `expires`: period -1 of an anchor at `expires` (see importCustomers).
              periodStart: boundary(periodEnd, plan, -1),
              nextPeriodEnd: boundary(periodEnd, plan, 1),
              username,
              balanceCents,
            }
          : null,
    });
  }

  // Duplicates within the file: every row sharing an account, phone or username is refused.
  const linesBy = (key: (c: Checked) => string | null) => {
    const map = new Map<string, number[]>();
    for (const c of checked) {
      const k = key(c);
      if (!k || c.record.problem) continue;
      map.set(k, [...(map.get(k) ?? []), c.record.line]);
    }
    return map;
  };
  const byAccount = linesBy((c) => c.accountKey || null);
  const byPhone = linesBy((c) => c.phone);
  const byUsername = linesBy((c) => c.username || null);
  for (const c of checked) {
    if (c.record.problem) continue;
    const others = (map: Map<string, number[]>, k: string | null) =>
      k ? (map.get(k) ?? []).filter((l) => l !== c.record.line) : [];
    const a = others(byAccount, c.accountKey);
    if (a.length)
      c.problems.push({
        kind: "duplicate_account",
        message: `duplicate account ${c.record.values.account} (also on line ${a.join(", ")})`,
      });
    const p = others(byPhone, c.phone);
    if (p.length)
      c.problems.push({
        kind: "duplicate_phone",
        message: `duplicate phone ${c.phone} (also on line ${p.join(", ")})`,
      });
    const u = others(byUsername, c.username);
    // A username made from a duplicate account repeats its duplicate: reported once, as the account.
    if (u.length && !(a.length && !c.record.values.username))
      c.problems.push({
        kind: "duplicate_username",
        message: `duplicate username ${c.username} (also on line ${u.join(", ")})`,
      });
  }

  // Against the database.
  const accountKeys = [...byAccount.keys()];
  const existing = accountKeys.length
    ? await customersInImportForm(
        tx,
        settings.timezone,
        sql`upper(c.account_number) = any(${textArray(accountKeys)})`,
      )
    : [];
  const existingByAccount = new Map(existing.map((e) => [e.account.toUpperCase(), e]));
  const phones = [...byPhone.keys()];
  const phoneOwners = phones.length
    ? await queryRows<{ phone: string; account: string }>(
        tx,
        sql`select phone, account_number as account from customers where phone = any(${textArray(phones)})`,
      )
    : [];
  const phoneOwner = new Map(phoneOwners.map((r) => [r.phone, r.account]));
  const usernames = [...byUsername.keys()];
  const usernameOwners = usernames.length
    ? await queryRows<{ username: string; account: string }>(
        tx,
        sql`select s.network_username as username, c.account_number as account
            from subscriptions s join customers c on c.id = s.customer_id
            where s.network_username = any(${textArray(usernames)})`,
      )
    : [];
  const usernameOwner = new Map(usernameOwners.map((r) => [r.username, r.account]));

  const rows: ImportRow[] = [];
  const toCreate: NewRow[] = [];
  for (const c of checked) {
    const account = c.record.values.account;
    const found = c.accountKey ? existingByAccount.get(c.accountKey) : undefined;
    let outcome: ImportRow["outcome"] = "refused";
    if (c.problems.length === 0 && c.row) {
      if (found) {
        const differences = differencesFrom(found, c.row, c.record.values);
        if (differences.length === 0) outcome = "unchanged";
        else
          c.problems.push({
            kind: "conflict",
            message: `account ${found.account} is already in the database with other data: ${differences.join("; ")}`,
          });
      } else {
        const phoneAt = phoneOwner.get(c.row.phone);
        if (phoneAt)
          c.problems.push({
            kind: "duplicate_phone",
            message: `phone ${c.row.phone} already belongs to account ${phoneAt}`,
          });
        const userAt = usernameOwner.get(c.row.username);
        if (userAt)
          c.problems.push({
            kind: "duplicate_username",
            message: `username ${c.row.username} already belongs to account ${userAt}`,
          });
        if (c.problems.length === 0) {
          outcome = "new";
          toCreate.push({ line: c.record.line, ...c.row });
        }
      }
    }
    rows.push({ line: c.record.line, account, outcome, problems: c.problems });
  }
  const counts = {
    rows: rows.length,
    new: rows.filter((r) => r.outcome === "new").length,
    unchanged: rows.filter((r) => r.outcome === "unchanged").length,
    refused: rows.filter((r) => r.outcome === "refused").length,
  };
  return { report: { fileError: null, rows, counts, committed: false }, toCreate };
}

export function differencesFrom(
  db: ExistingCustomer,
  row: Omit<NewRow, "line">,
  file: Record<ImportColumn, string>,
): string[] {
  const out: string[] = [];
  const differ = (field: string, dbValue: string, fileValue: string) => {
    if (dbValue !== fileValue)
      out.push(`${field} is ${dbValue || "(none)"} there, ${fileValue || "(none)"} here`);
  };
  if (db.plan === null) return ["it has no subscription that is not cancelled"];
  differ("name", db.name, row.name);
  differ("phone", db.phone, row.phone);
  differ("plan", db.plan.toLowerCase(), file.plan.toLowerCase());
  differ("status", db.status ?? "", row.status);
  differ("expires", db.expires ?? "", file.expires);
  differ("router", db.router ?? "", file.router);
  if (file.username) differ("username", db.username ?? "", file.username);
  differ("balance", centsToKes(Number(db.balance)), centsToKes(row.balanceCents));
  return out;
}
