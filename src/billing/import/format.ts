import { type CsvError, parse } from "csv-parse/sync";
import { parseShillings } from "../money.ts";
import { zoneOffsetMs } from "../periods.ts";

/** The import's file format: its columns and limits, reading the CSV, dates and amounts, and the report. */

/** The `'` an export writes before a cell a spreadsheet would run as a formula (export.ts). */
const FORMULA_ESCAPE = /^'(?=[=+\-@\t\r])/;

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
export const IMPORT_STATUSES = ["active", "suspended", "pending"] as const;
export type ImportStatus = (typeof IMPORT_STATUSES)[number];

/** A file size as the import words it to people: `25.0 MB`, and two decimals below 1 MB (`0.49 MB`). */
export const megabytes = (bytes: number): string =>
  `${(bytes / 1024 / 1024).toFixed(bytes < 1024 * 1024 ? 2 : 1)} MB`;

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
export interface NewRow {
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

export interface Analysis {
  report: ImportReport;
  toCreate: NewRow[];
}

// ---------------------------------------------------------------------------------------------
// Reading the file

export interface RawRecord {
  line: number;
  values: Record<ImportColumn, string>;
  problem: string | null;
}

/** Refuses bytes that are not UTF-8, instead of replacing them with U+FFFD. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export function readCsv(
  input: string | Uint8Array,
  maxBytes = MAX_IMPORT_BYTES,
  maxRows = MAX_IMPORT_ROWS,
): { records: RawRecord[]; fileError: string | null } {
  const size = typeof input === "string" ? Buffer.byteLength(input) : input.byteLength;
  if (size > maxBytes)
    return {
      records: [],
      fileError: `the file is ${megabytes(size)}; at most ${megabytes(maxBytes)} can be imported at once (split it)`,
    };
  let decoded: string;
  try {
    decoded = typeof input === "string" ? input : strictUtf8.decode(input);
  } catch {
    // Excel's plain "CSV" is Windows-1252: read as UTF-8, a name like Ng'ang'a would be stored
    // broken on every SMS, receipt and export.
    return {
      records: [],
      fileError:
        'the file is not UTF-8 text (Excel\'s plain "CSV" is not): save it as "CSV UTF-8 (Comma delimited)" and send it again',
    };
  }
  const text = decoded.replace(/^\uFEFF/, "");
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
      IMPORT_COLUMNS.map((c, i) => [c, (entry.record[i] ?? "").trim().replace(FORMULA_ESCAPE, "")]),
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

/** A date, or a date and a time of day (as the export writes a period that ends during a day). */
export const DATE = /^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}))?$/;

/**
 * `YYYY-MM-DD` → midnight at the start of that day in the ISP's time zone; `YYYY-MM-DD HH:MM` → that
 * minute of that day; null if no such date or time.
 */
export function localMidnight(text: string, timeZone: string): Date | null {
  const match = DATE.exec(text);
  if (!match) return null;
  const [y, m, d] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const [hour, minute] = [Number(match[4] ?? 0), Number(match[5] ?? 0)];
  if (hour > 23 || minute > 59) return null;
  const guess = Date.UTC(y, m - 1, d, hour, minute);
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
