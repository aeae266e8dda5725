import { stringify } from "csv-stringify/sync";
import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { centsToKes, customersInImportForm, IMPORT_COLUMNS } from "./import.ts";

/**
 * CSV exports for the ISP's own books and for moving data: customers (the import's columns, so an
 * export imports back as it was), payments and invoices. Amounts are KES with two decimals, dates
 * in the ISP's time zone. Built in one go: fine up to some hundred thousand rows.
 */

export const EXPORT_KINDS = ["customers", "payments", "invoices"] as const;
export type ExportKind = (typeof EXPORT_KINDS)[number];

export function isExportKind(value: string): value is ExportKind {
  return (EXPORT_KINDS as readonly string[]).includes(value);
}

export interface CsvExport {
  csv: string;
  rows: number;
}

/**
 * A cell Excel or LibreOffice would run as a formula (`=HYPERLINK(…)` in a customer's name, or in the
 * account reference a payer typed) is written behind a `'`, which shows it as text; the import takes
 * the `'` off again (FORMULA_ESCAPE). Numbers keep their sign (a balance `-250.50`, a phone `+254…`).
 */
function inertCell(value: string | number | null): string | number | null {
  if (typeof value !== "string" || !/^[=+\-@\t\r]/.test(value) || /^[+-]?\d+(\.\d+)?$/.test(value))
    return value;
  return `'${value}`;
}

/**
 * With a byte order mark: Excel opens a CSV without one as Windows-1252, and names such as Wanjĩrũ
 * come out garbled (and are saved so). The import skips it.
 */
function toCsv(columns: readonly string[], rows: (string | number | null)[][]): CsvExport {
  const cells = rows.map((row) => row.map(inertCell));
  return { csv: `\uFEFF${stringify(cells, { header: true, columns: [...columns] })}`, rows: rows.length };
}

/** Customers with a subscription that is not cancelled, in the import's form. */
export async function exportCustomers(db: Executor, timeZone: string): Promise<CsvExport> {
  const rows = await customersInImportForm(
    db,
    timeZone,
    sql`exists (select 1 from subscriptions x where x.customer_id = c.id and x.status <> 'cancelled')`,
  );
  return toCsv(
    IMPORT_COLUMNS,
    rows.map((r) => [
      r.account,
      r.name,
      r.phone,
      r.plan,
      r.status,
      r.expires,
      r.router ?? "",
      r.username,
      centsToKes(Number(r.balance)),
    ]),
  );
}

export async function exportPayments(db: Executor, timeZone: string): Promise<CsvExport> {
  const rows = await queryRows<{
    received_at: string;
    account: string | null;
    amount_cents: string | number;
    method: string;
    provider_ref: string;
    status: string;
  }>(
    db,
    sql`select to_char(p.received_at at time zone ${timeZone}, 'YYYY-MM-DD HH24:MI:SS') as received_at,
          coalesce(c.account_number, p.account_reference) as account,
          p.amount_cents, p.method, p.provider_ref, p.status
        from payments p left join customers c on c.id = p.customer_id
        order by p.received_at, p.id`,
  );
  return toCsv(
    ["received_at", "account", "amount", "method", "provider_ref", "status"],
    rows.map((r) => [
      r.received_at,
      r.account ?? "",
      centsToKes(Number(r.amount_cents)),
      r.method,
      r.provider_ref,
      r.status,
    ]),
  );
}

export async function exportInvoices(db: Executor, timeZone: string): Promise<CsvExport> {
  const rows = await queryRows<{
    account: string;
    period: string | null;
    amount_cents: string | number;
    paid_cents: string | number;
    status: string;
  }>(
    db,
    sql`select c.account_number as account,
          case when i.period_start is null then null
               else to_char(i.period_start at time zone ${timeZone}, 'YYYY-MM-DD') || '..' ||
                    to_char(i.period_end at time zone ${timeZone}, 'YYYY-MM-DD') end as period,
          i.amount_cents, i.paid_cents, i.status
        from invoices i join customers c on c.id = i.customer_id
        order by i.issued_at, i.id`,
  );
  return toCsv(
    ["account", "period", "amount", "paid", "status"],
    rows.map((r) => [
      r.account,
      r.period ?? "",
      centsToKes(Number(r.amount_cents)),
      centsToKes(Number(r.paid_cents)),
      r.status,
    ]),
  );
}

export function exportCsv(db: Executor, timeZone: string, kind: ExportKind): Promise<CsvExport> {
  switch (kind) {
    case "customers":
      return exportCustomers(db, timeZone);
    case "payments":
      return exportPayments(db, timeZone);
    case "invoices":
      return exportInvoices(db, timeZone);
  }
}
