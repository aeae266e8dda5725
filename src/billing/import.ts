import { createHash } from "node:crypto";
import { type CsvError, parse } from "csv-parse/sync";
import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { textArray, ts } from "../db/params.ts";
import { requireBox } from "../db/sealed.ts";
import { checkPhone, DEFAULT_SERVED_COUNTRIES } from "../lib/phone.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext, BillingSettings } from "./context.ts";
import { parseShillings } from "./money.ts";
import { assertCovers, lockCustomerMoney } from "./money-lock.ts";
import { periodBoundary, zoneOffsetMs } from "./periods.ts";
import { randomPassword } from "./subscriptions.ts";

/**
 * Customers from a spreadsheet (CSV), for an ISP moving to Tandao: one row per subscriber with
 * plan, phone, account number, the end of the current period, router, PPPoE username and opening
 * balance. `analyseCustomerImport` is the dry run: it reads the file and reports row by row what an
 * import would do (new, unchanged, or why the row is refused); `importCustomers` re-runs the same
 * analysis in one transaction and writes the new rows, skipping the refused ones. Rows already in
 * the database with the same data are "unchanged", so importing the same file twice changes
 * nothing; a row that differs from the database is a conflict and is never written over.
 *
 * Imported subscribers get no welcome message. Their opening balance, written under the money lock,
 * is a credit entry or, for a debt, an open invoice (see importCustomers), so the ledger sum is the
 * file's balance and an export gives it back. The invoice job bills the period after `expires` as
 * for everyone else. Active subscribers get an `ensure_account` provisioning row.
 */

export const IMPORT_COLUMNS = [
  "account",
  "name",
  "phone",
  "plan",
  "status",
  "expires",
  "router",
  "username",
  "balance",
] as const;
export type ImportColumn = (typeof IMPORT_COLUMNS)[number];

export const MAX_IMPORT_BYTES = 5 * 1024 * 1024;
export const MAX_IMPORT_ROWS = 50_000;
const IMPORT_STATUSES = ["active", "suspended", "pending"] as const;
type ImportStatus = (typeof IMPORT_STATUSES)[number];

export type ProblemKind =
  | "bad_row"
  | "bad_account"
  | "bad_name"
  | "bad_phone"
  | "foreign_phone"
  | "unknown_plan"
  | "unknown_router"
  | "bad_status"
  | "bad_date"
  | "bad_amount"
  | "bad_username"
  | "duplicate_account"
  | "duplicate_phone"
  | "duplicate_username"
  | "conflict";

export interface RowProblem {
  kind: ProblemKind;
  message: string;
}

export interface ImportRow {
  /** Line of the file the row starts on (the header is line 1). */
  line: number;
  account: string;
  outcome: "new" | "unchanged" | "refused";
  problems: RowProblem[];
}

export interface ImportReport {
  /** Set when the whole file is refused (too large, bad header, unclosed quote…): nothing is imported. */
  fileError: string | null;
  rows: ImportRow[];
  counts: { rows: number; new: number; unchanged: number; refused: number };
  /** True once the new rows are written. */
  committed: boolean;
}

export interface ImportOptions {
  /** ISO codes of the countries served (SERVED_COUNTRIES); national forms read as the first one's. */
  servedCountries?: readonly string[];
  /** Shown in the audit row. */
  fileName?: string;
  /** Bounds on the file (defaults MAX_IMPORT_BYTES, MAX_IMPORT_ROWS); a benchmark may raise them. */
  maxBytes?: number;
  maxRows?: number;
}

/** A valid new row, ready to write. */
interface NewRow {
  line: number;
  account: string;
  name: string;
  phone: string;
  planId: number;
  routerId: number | null;
  status: ImportStatus;
  periodEnd: Date;
  periodStart: Date;
  /** The end of the period after `expires` (a suspended debtor's debt is that period's invoice). */
  nextPeriodEnd: Date;
  username: string;
  balanceCents: number;
}

interface Analysis {
  report: ImportReport;
  toCreate: NewRow[];
}

// ---------------------------------------------------------------------------------------------
// Reading the file

interface RawRecord {
  line: number;
  values: Record<ImportColumn, string>;
  problem: string | null;
}

function readCsv(
  input: string | Uint8Array,
  maxBytes = MAX_IMPORT_BYTES,
  maxRows = MAX_IMPORT_ROWS,
): { records: RawRecord[]; fileError: string | null } {
  const size = typeof input === "string" ? Buffer.byteLength(input) : input.byteLength;
  if (size > maxBytes)
    return {
      records: [],
      fileError: `the file is ${(size / 1024 / 1024).toFixed(1)} MB; at most ${maxBytes / 1024 / 1024} MB can be imported at once (split it)`,
    };
  const text = (typeof input === "string" ? input : Buffer.from(input).toString("utf8")).replace(
    /^\uFEFF/,
    "",
  );
  const skipped: { line: number; message: string; code: string }[] = [];
  let parsed: { record: string[]; info: { lines: number } }[];
  try {
    parsed = parse(text, {
      info: true,
      relax_column_count: false,
      skip_empty_lines: true,
      skip_records_with_error: true,
      max_record_size: 10_000,
      on_skip: (error: CsvError | undefined) => {
        if (error) skipped.push({ line: Number(error.lines ?? 0), message: error.message, code: error.code });
      },
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (error) {
    return {
      records: [],
      fileError: `the file is not valid CSV: ${error instanceof Error ? error.message : String(error)}`,
    };
  }

  // An opening quote that never closes reads the rest of the file as one field, until the end or
  // until the record grows past max_record_size: either way, nothing after it can be trusted.
  const unclosed = skipped.find((s) => s.code === "CSV_QUOTE_NOT_CLOSED" || s.code === "CSV_MAX_RECORD_SIZE");
  const headerEntry = parsed[0];
  if (!headerEntry) return { records: [], fileError: "the file is empty" };
  const header = headerEntry.record.map((h) => h.trim().toLowerCase());
  if (header.join(",") !== IMPORT_COLUMNS.join(","))
    return {
      records: [],
      fileError: `the first line must be the header ${IMPORT_COLUMNS.join(",")} (it is ${header.join(",")})`,
    };
  if (unclosed) {
    // Everything after an opening quote that never closes was read as one field: refuse the file
    // instead of importing a part of it silently.
    const lastGood = parsed.reduce(
      (max, p) => (p.info.lines < unclosed.line ? Math.max(max, p.info.lines) : max),
      1,
    );
    return {
      records: [],
      fileError: `a quote opened on line ${lastGood + 1} or after is never closed, so the rest of the file could not be read; fix it and try again`,
    };
  }
  if (parsed.length - 1 > maxRows)
    return {
      records: [],
      fileError: `the file has ${parsed.length - 1} rows; at most ${maxRows} can be imported at once (split it)`,
    };

  const records: RawRecord[] = [];
  for (const entry of parsed.slice(1)) {
    const newlines = entry.record.reduce((n, field) => n + (field.match(/\r\n|\r|\n/g)?.length ?? 0), 0);
    const line = entry.info.lines - newlines;
    const values = Object.fromEntries(
      IMPORT_COLUMNS.map((c, i) => [c, (entry.record[i] ?? "").trim()]),
    ) as Record<ImportColumn, string>;
    records.push({
      line,
      values,
      problem:
        newlines > 0 ? `a field runs over lines ${line}–${entry.info.lines} (a misplaced quote?)` : null,
    });
  }
  for (const skip of skipped)
    records.push({
      line: skip.line,
      values: Object.fromEntries(IMPORT_COLUMNS.map((c) => [c, ""])) as Record<ImportColumn, string>,
      problem: skip.message.replace(/ on line \d+$/, ""),
    });
  records.sort((a, b) => a.line - b.line);
  return { records, fileError: null };
}

// ---------------------------------------------------------------------------------------------
// Dates and amounts

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** `YYYY-MM-DD` → midnight at the start of that day in the ISP's time zone; null if no such date. */
export function localMidnight(text: string, timeZone: string): Date | null {
  const match = DATE.exec(text);
  if (!match) return null;
  const [y, m, d] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const guess = Date.UTC(y, m - 1, d);
  const check = new Date(guess);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== m - 1 || check.getUTCDate() !== d) return null;
  if (y < 2000 || y > 2100) return null;
  let instant = guess - zoneOffsetMs(new Date(guess), timeZone);
  instant = guess - zoneOffsetMs(new Date(instant), timeZone);
  return new Date(instant);
}

/** KES as written in the file (`1500`, `-250.50`, `1,500`) → integer cents; null if not an amount. */
export function parseBalance(text: string): number | null {
  if (text === "") return 0;
  const negative = text.startsWith("-");
  const cents = parseShillings(negative ? text.slice(1) : text);
  if (cents === null) return null;
  return negative ? -cents : cents;
}

/** Integer cents → `1500.00`, `-250.50`: what the import reads back exactly. */
export function centsToKes(cents: number): string {
  const abs = Math.abs(cents);
  return `${cents < 0 ? "-" : ""}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

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
          to_char(s.current_period_end at time zone ${timeZone}, 'YYYY-MM-DD') as expires,
          coalesce((select sum(l.amount_cents) from ledger_entries l where l.customer_id = c.id), 0)::text as balance
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

const ACCOUNT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

async function analyse(
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
    if (!ACCOUNT.test(v.account) || /^TDW/i.test(v.account))
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
    if (!periodEnd) problems.push({ kind: "bad_date", message: `bad date "${v.expires}" (YYYY-MM-DD)` });
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

function differencesFrom(
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

// ---------------------------------------------------------------------------------------------
// Use-cases

/** The dry run: what importing `input` would do, row by row. Writes nothing. */
export async function analyseCustomerImport(
  ctx: BillingContext,
  input: string | Uint8Array,
  options: ImportOptions = {},
): Promise<ImportReport> {
  return (await analyse(ctx.db, ctx.settings, input, options)).report;
}

const CHUNK = 1_000;

function chunks<T>(items: T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Imports the file in one transaction: the analysis is run again inside it (imports queue on an
 * advisory lock), and the rows it finds new are written; refused rows are skipped and reported.
 * A file-level error imports nothing.
 */
export async function importCustomers(
  ctx: BillingContext,
  actor: Actor,
  input: string | Uint8Array,
  options: ImportOptions = {},
): Promise<ImportReport> {
  return ctx.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('tandao:customer-import'))`);
    const { report, toCreate } = await analyse(tx, ctx.settings, input, options);
    if (report.fileError) return report;
    const now = ctx.clock.now();

    // Written set-based: one statement per chunk with its rows as one JSON parameter (a hundred
    // thousand rows in seconds, where a statement per row would take minutes).
    const ids = new Map<string, number>();
    for (const part of chunks(toCreate, 10_000)) {
      const inserted = await queryRows<{ id: number; account: string }>(
        tx,
        sql`insert into customers (account_number, phone, name)
            select x.account, x.phone, x.name
            from jsonb_to_recordset(${JSON.stringify(part.map((r) => ({ account: r.account, phone: r.phone, name: r.name })))}::jsonb)
              as x(account text, phone text, name text)
            returning id, account_number as account`,
      );
      for (const c of inserted) ids.set(c.account.toUpperCase(), Number(c.id));
    }
    const customerId = (r: NewRow) => ids.get(r.account.toUpperCase())!;
    const money = await lockCustomerMoney(tx, ids.values());

    const box = requireBox();
    const subscriptionIds = new Map<number, number>();
    for (const part of chunks(toCreate, 10_000)) {
      const values = part.map((r) => ({
        customer_id: customerId(r),
        plan_id: r.planId,
        router_id: r.routerId,
        username: r.username,
        // Sealed as the schema's column type seals it (db/sealed.ts).
        password: box.seal(randomPassword()),
        status: r.status,
        suspended_reason: r.status === "suspended" ? (r.balanceCents < 0 ? "dunning" : "admin") : null,
        start: r.periodStart.toISOString(),
        end: r.periodEnd.toISOString(),
      }));
      // Counted from the period end, one period back (period -1): later periods keep the day of `expires`.
      const inserted = await queryRows<{ id: number; customer_id: number }>(
        tx,
        sql`insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password,
              status, suspended_reason, current_period_start, current_period_end, billing_anchor, period_index)
            select x.customer_id, x.plan_id, x.router_id, x.username, x.password, x.status, x.suspended_reason,
              x.start, x."end", x."end", -1
            from jsonb_to_recordset(${JSON.stringify(values)}::jsonb) as x(customer_id int, plan_id int,
              router_id int, username text, password text, status text, suspended_reason text,
              start timestamptz, "end" timestamptz)
            returning id, customer_id`,
      );
      for (const s of inserted) subscriptionIds.set(Number(s.customer_id), Number(s.id));
    }

    // Opening balances, under the lock taken above, one statement per chunk (rows as one JSON
    // parameter). A credit is a ledger entry. A debt is an open invoice with its ledger entry, so
    // that it is collected like any other: dunning reminds and suspends, a payment settles it, and
    // service waiting on it (pending, suspended) comes back once it is paid. A suspended debtor's
    // debt is the invoice of the period after `expires` (as if dunning had suspended them for it),
    // anyone else's is a manual invoice due now.
    const credits = toCreate.filter((r) => r.balanceCents > 0);
    for (const part of chunks(credits, 10_000)) {
      const entries = part.map((r) => {
        const id = customerId(r);
        assertCovers(money, id);
        return { customer_id: id, amount_cents: r.balanceCents };
      });
      await tx.execute(
        sql`insert into ledger_entries (customer_id, kind, amount_cents, memo, created_at)
            select x.customer_id, 'credit', x.amount_cents, 'opening balance (import)', ${ts(now)}
            from jsonb_to_recordset(${JSON.stringify(entries)}::jsonb) as x(customer_id int, amount_cents bigint)`,
      );
    }
    const debts = toCreate.filter((r) => r.balanceCents < 0);
    for (const part of chunks(debts, 10_000)) {
      const rows = part.map((r) => {
        const id = customerId(r);
        assertCovers(money, id);
        const recurring = r.status === "suspended";
        return {
          customer_id: id,
          subscription_id: subscriptionIds.get(id)!,
          kind: recurring ? "recurring" : "manual",
          period_start: recurring ? r.periodEnd.toISOString() : null,
          period_end: recurring ? r.nextPeriodEnd.toISOString() : null,
          amount_cents: -r.balanceCents,
          due_at: recurring ? r.periodEnd.toISOString() : now.toISOString(),
        };
      });
      await tx.execute(
        sql`with x as (
              select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(customer_id int,
                subscription_id int, kind text, period_start timestamptz, period_end timestamptz,
                amount_cents bigint, due_at timestamptz)
            ),
            issued as (
              insert into invoices (customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, issued_at)
              select customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, ${ts(now)}
              from x
              returning id, customer_id, amount_cents
            ),
            lines as (
              insert into invoice_lines (invoice_id, description, amount_cents)
              select id, 'Opening balance (import)', amount_cents from issued
            )
            insert into ledger_entries (customer_id, kind, amount_cents, invoice_id, memo, created_at)
            select customer_id, 'invoice', -amount_cents, id, 'opening balance (import)', ${ts(now)} from issued`,
      );
    }

    // Router accounts for active subscribers: the outbox rows enqueueProvisioning writes, in bulk.
    const active = toCreate
      .filter((r) => r.status === "active")
      .map((r) => ({ router_id: r.routerId, subscription_id: subscriptionIds.get(customerId(r))! }));
    for (const part of chunks(active, 10_000)) {
      await tx.execute(
        sql`insert into provisioning_outbox (router_id, subscription_id, action, payload, next_attempt_at, created_at)
            select x.router_id, x.subscription_id, 'ensure_account', '{}'::jsonb, ${ts(now)}, ${ts(now)}
            from jsonb_to_recordset(${JSON.stringify(part)}::jsonb) as x(router_id int, subscription_id int)`,
      );
    }

    const digest = createHash("sha256")
      .update(typeof input === "string" ? input : Buffer.from(input))
      .digest("hex")
      .slice(0, 16);
    await audit(tx, actor, now, {
      action: "customers.imported",
      entity: "import",
      entityId: digest,
      details: {
        file: options.fileName ?? null,
        ...report.counts,
        refusedLines: report.rows
          .filter((r) => r.outcome === "refused")
          .map((r) => r.line)
          .slice(0, 1000),
      },
    });
    return { ...report, committed: true };
  });
}

// ---------------------------------------------------------------------------------------------
// The report as text (the CLI prints it; the admin chat can send it back as a file)

export function formatImportReport(report: ImportReport, options: { allRows?: boolean } = {}): string[] {
  if (report.fileError) return [`file refused: ${report.fileError}`];
  const lines: string[] = [];
  for (const row of report.rows) {
    if (row.outcome !== "refused" && !options.allRows) continue;
    const label = `line ${row.line}${row.account ? ` ${row.account}` : ""}`;
    lines.push(
      row.outcome === "refused"
        ? `${label}: refused: ${row.problems.map((p) => p.message).join("; ")}`
        : `${label}: ${row.outcome}`,
    );
  }
  const { rows, unchanged, refused } = report.counts;
  const created = report.counts.new;
  lines.push(
    report.committed
      ? `imported ${created} new customers; ${unchanged} unchanged, ${refused} refused (of ${rows} rows)`
      : `dry run: ${created} new, ${unchanged} unchanged, ${refused} refused (of ${rows} rows); nothing was written`,
  );
  return lines;
}
