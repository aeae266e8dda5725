import { and, asc, eq, inArray, isNull, lte, or, sql } from "drizzle-orm";
import { Api, GrammyError } from "grammy";
import { BillingError } from "../../../billing/context.ts";
import {
  analyseCustomerImport,
  formatImportReport,
  type ImportReport,
  importCustomers,
  MAX_IMPORT_BYTES,
  megabytes,
} from "../../../billing/import.ts";
import type { Executor } from "../../../db/client.ts";
import { ts } from "../../../db/params.ts";
import { type AdminImportStatus, adminImports } from "../../../db/schema/index.ts";
import { counted } from "../../../lib/plural.ts";
import { queueAdminFile } from "../alert-queue.ts";
import { askConfirmation } from "../confirmations.ts";
import { type AdminBotDeps, type AdminKit, createAdminKit, splitMessage } from "../kit.ts";
import { adminActor, findAdmin } from "../roles.ts";
import type { ImportAction } from "./import.ts";

/** "1 customer", "3 customers" (with `kind`: "1 new customer"). */
export const customerCount = (n: number, kind = ""): string => counted(n, `${kind}customer`);
const rowCount = (n: number): string => counted(n, "row");

/**
 * The work behind a CSV sent to the admin chat, after the update was answered: fetch the file from
 * Telegram and report the dry run (with the Confirm question), or import a confirmed one. Each
 * `admin_imports` row is taken under a lease, so instances sharing the database never work on the
 * same file twice, and one whose instance stopped midway is taken up by the next run.
 */

/** Telegram lets a bot download files up to 20 MB; the import itself takes less (MAX_IMPORT_BYTES). */
export const TELEGRAM_DOWNLOAD_LIMIT_BYTES = 20 * 1024 * 1024;
export const IMPORT_FILE_LIMIT_BYTES = Math.min(MAX_IMPORT_BYTES, TELEGRAM_DOWNLOAD_LIMIT_BYTES);
/** Longer than fetching and importing the largest file takes; a row held longer was abandoned. */
const LEASE_MS = 10 * 60_000;
const DOWNLOAD_TIMEOUT_MS = 60_000;
/** Refused rows shown in the chat; a longer report also comes as a file. */
const ROWS_SHOWN = 20;

// The chat's own texts (import.ts) word sizes as the import does.
export { megabytes };

type ImportRow = typeof adminImports.$inferSelect;

/** The same rules as the CLI's `customers import`: the dry run and the import must agree. */
const importOptions = (kit: AdminKit, fileName: string) => ({
  fileName,
  ...(kit.deps.servedCountries ? { servedCountries: kit.deps.servedCountries } : {}),
});

/** Works through what is due (new files, confirmed ones) until nothing is left. */
export async function runImports(kit: AdminKit): Promise<void> {
  await letGoUnanswered(kit);
  for (;;) {
    const row = await claimNext(kit);
    if (!row) return;
    try {
      if (row.status === "requested") await checkFile(kit, row);
      else await importFile(kit, row);
    } catch (error) {
      kit.log.error({ err: error, importId: row.id }, "admin chat import failed");
      await finish(kit, row, "failed", {
        error: error instanceof Error ? error.message.slice(0, 500) : String(error),
        text: `❌ ${row.fileName}: something went wrong; nothing was imported. Send the file again.`,
      });
    }
  }
}

/**
 * Files an instance that stopped left half-done are otherwise taken up only when the next file or
 * press comes: the bot starting takes them up once, in the background (a start never waits for
 * Telegram's download nor fails on it). A lease still running is left to its holder.
 */
export function resumeImportsAtStart(deps: AdminBotDeps): void {
  const kit = createAdminKit(deps);
  kit.background("customer import at start", () => runImports(kit));
}

/** Files whose question was cancelled or expired are let go (their bytes are not kept). */
async function letGoUnanswered(kit: AdminKit): Promise<void> {
  const now = kit.clock.now();
  await kit.db.execute(sql`
    update admin_imports i
    set status = case when c.outcome = 'cancelled' then 'cancelled' else 'expired' end,
      content_base64 = null, updated_at = ${ts(now)}
    from admin_confirmations c
    where c.token = i.confirmation_token and i.status = 'checked'
      and (c.outcome = 'cancelled' or (c.used_at is null and c.expires_at <= ${ts(now)}))`);
}

async function claimNext(kit: AdminKit): Promise<ImportRow | null> {
  const now = kit.clock.now();
  const due = and(
    inArray(adminImports.status, ["requested", "confirmed"]),
    or(isNull(adminImports.leaseUntil), lte(adminImports.leaseUntil, now)),
  );
  const [row] = await kit.db
    .update(adminImports)
    .set({ leaseUntil: new Date(now.getTime() + LEASE_MS), updatedAt: now })
    .where(
      and(
        due,
        inArray(
          adminImports.id,
          kit.db
            .select({ id: adminImports.id })
            .from(adminImports)
            .where(due)
            .orderBy(asc(adminImports.id))
            .limit(1)
            .for("update", { skipLocked: true }),
        ),
      ),
    )
    .returning();
  return row ?? null;
}

/** The row is still this run's: same status, same lease (another run takes it only once the lease passed). */
const held = (row: ImportRow) =>
  and(
    eq(adminImports.id, row.id),
    eq(adminImports.status, row.status),
    row.leaseUntil ? eq(adminImports.leaseUntil, row.leaseUntil) : isNull(adminImports.leaseUntil),
  );

/** Ends the row's work in one transaction with what the chat is told; false when it was not ours any more. */
async function finish(
  kit: AdminKit,
  row: ImportRow,
  status: AdminImportStatus,
  outcome: {
    text?: string;
    error?: string;
    counts?: ImportReport["counts"];
    /** More written with it (the report file, the question): answers the confirmation token. */
    also?: (tx: Executor, now: Date) => Promise<string | undefined>;
    contentBase64?: string;
  },
): Promise<boolean> {
  return kit.inTx(async (tx, _, now) => {
    const [mine] = await tx
      .update(adminImports)
      .set({
        status,
        leaseUntil: null,
        updatedAt: now,
        contentBase64: outcome.contentBase64 ?? null,
        ...(outcome.counts ? { counts: { ...outcome.counts } } : {}),
        ...(outcome.error ? { error: outcome.error } : {}),
      })
      .where(held(row))
      .returning({ id: adminImports.id });
    if (!mine) return false;
    const chatId = Number(row.chatId);
    if (outcome.text)
      for (const part of splitMessage(outcome.text.split("\n"))) await kit.say(tx, now, chatId, part);
    const token = await outcome.also?.(tx, now);
    if (token)
      await tx.update(adminImports).set({ confirmationToken: token }).where(eq(adminImports.id, row.id));
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// The dry run

async function checkFile(kit: AdminKit, row: ImportRow): Promise<void> {
  const name = row.fileName;
  let bytes: Uint8Array;
  try {
    bytes = await download(kit, row.fileId);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    await finish(kit, row, "failed", {
      error: why.slice(0, 500),
      text: `❌ ${name} could not be fetched from Telegram (${why}). Nothing was imported; send it again.`,
    });
    return;
  }
  const report = await analyseCustomerImport(kit.billing, bytes, importOptions(kit, name));
  if (report.fileError) {
    await finish(kit, row, "failed", {
      error: report.fileError.slice(0, 500),
      text: `❌ ${name} was refused as a whole: ${report.fileError}. Nothing was imported.`,
    });
    return;
  }
  const { text, full } = reportText(name, report);
  const reportFile = full
    ? (tx: Executor, now: Date) =>
        queueAdminFile(tx, now, Number(row.chatId), {
          method: "sendDocument",
          bytes: `${formatImportReport(report, { allRows: true }).join("\n")}\n`,
          filename: `${name.replace(/\.csv$/i, "")}-report.txt`,
          caption: `${name}: every row and what the import would do with it`,
        })
    : null;
  const count = report.counts.new;
  if (count === 0) {
    await finish(kit, row, "done", {
      counts: report.counts,
      text: `${text}\nNothing to import: no row is new.`,
      also: async (tx, now) => void (await reportFile?.(tx, now)),
    });
    return;
  }
  const admin = await findAdmin(kit.db, row.adminTelegramId);
  if (!admin) {
    // Removed meanwhile: nobody may confirm it.
    await finish(kit, row, "failed", { counts: report.counts, error: "the admin who sent it was removed" });
    return;
  }
  const action: ImportAction = {
    kind: "feature",
    feature: "import",
    importId: row.id,
    fileName: name,
    count,
  };
  await finish(kit, row, "checked", {
    counts: report.counts,
    contentBase64: Buffer.from(bytes).toString("base64"),
    text,
    async also(tx, now) {
      await reportFile?.(tx, now);
      return askConfirmation(
        tx,
        now,
        admin,
        Number(row.chatId),
        action,
        confirmQuestion(name, report),
        `✅ Import ${customerCount(count)}`,
      );
    },
  });
}

function reportText(name: string, report: ImportReport): { text: string; full: boolean } {
  const c = report.counts;
  const refused = formatImportReport(report).slice(0, -1);
  const lines = [
    `📄 ${name}, dry run: ${rowCount(c.rows)} — ${c.new} new, ${c.unchanged} already here (unchanged), ${c.refused} refused.`,
  ];
  if (refused.length) {
    lines.push("Refused rows (they are not imported):");
    lines.push(...refused.slice(0, ROWS_SHOWN).map((line) => `• ${line.slice(0, 300)}`));
  }
  const full = refused.length > ROWS_SHOWN;
  if (full) lines.push(`…and ${refused.length - ROWS_SHOWN} more: every row is in the file below.`);
  return { text: lines.join("\n"), full };
}

function confirmQuestion(name: string, report: ImportReport): string {
  const c = report.counts;
  const skipped = [
    c.refused ? `${c.refused} refused` : "",
    c.unchanged ? `${c.unchanged} already here` : "",
  ].filter(Boolean);
  return [
    `Import ${customerCount(c.new)} from ${name}?${skipped.length ? ` (${skipped.join(" and ")} are left as they are.)` : ""}`,
    "Opening balances go to the ledger and active subscribers get their router accounts; they get no welcome message.",
  ].join("\n");
}

/** The file's bytes, by the Bot API (`getFile`, then its download URL); errors never show the token. */
async function download(kit: AdminKit, fileId: string): Promise<Uint8Array> {
  const apiRoot = kit.deps.apiRoot ?? "https://api.telegram.org";
  const api = new Api(kit.deps.token, { apiRoot });
  let path: string | undefined;
  let size: number | undefined;
  try {
    const file = await api.getFile(fileId);
    path = file.file_path;
    size = file.file_size;
  } catch (error) {
    if (error instanceof GrammyError) throw new Error(`Telegram said: ${error.description}`);
    throw new Error("Telegram did not answer");
  }
  if (!path) throw new Error("Telegram gave no download for it");
  if (size !== undefined && size > IMPORT_FILE_LIMIT_BYTES)
    throw new Error(`it is ${megabytes(size)}, over ${megabytes(IMPORT_FILE_LIMIT_BYTES)}`);
  let response: Response;
  try {
    response = await fetch(`${apiRoot}/file/bot${kit.deps.token}/${path}`, {
      signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS),
    });
  } catch {
    throw new Error("the download did not complete");
  }
  if (!response.ok) throw new Error(`the download answered ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.byteLength > IMPORT_FILE_LIMIT_BYTES)
    throw new Error(`it is ${megabytes(bytes.byteLength)}, over ${megabytes(IMPORT_FILE_LIMIT_BYTES)}`);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The import, once confirmed

async function importFile(kit: AdminKit, row: ImportRow): Promise<void> {
  const bytes = Buffer.from(row.contentBase64 ?? "", "base64");
  const actor = adminActor(row.adminTelegramId);
  let imported: boolean;
  try {
    // One transaction: the import (its audit entry names the admin), the row marked done, the summary.
    imported = await kit.inTx(async (tx, inTxCtx, now) => {
      const [mine] = await tx
        .update(adminImports)
        .set({ status: "done", leaseUntil: null, contentBase64: null, updatedAt: now })
        .where(held(row))
        .returning({ id: adminImports.id });
      if (!mine) return false;
      const report = await importCustomers(inTxCtx, actor, bytes, importOptions(kit, row.fileName));
      if (report.fileError) throw new BillingError("import_refused", report.fileError);
      await tx
        .update(adminImports)
        .set({ counts: { ...report.counts } })
        .where(eq(adminImports.id, row.id));
      await kit.say(tx, now, Number(row.chatId), summaryText(row.fileName, report));
      return true;
    });
  } catch (error) {
    if (!(error instanceof BillingError)) throw error;
    await finish(kit, row, "failed", {
      error: error.message.slice(0, 500),
      text: `❌ ${row.fileName} was refused as a whole: ${error.message}. Nothing was imported.`,
    });
    return;
  }
  // New active subscribers have router accounts to create.
  if (imported) kit.deps.network?.kick?.();
}

function summaryText(name: string, report: ImportReport): string {
  const c = report.counts;
  return [
    `✅ Imported ${customerCount(c.new, "new ")} from ${name}; ${c.unchanged} already here, ${c.refused} refused (of ${rowCount(c.rows)}).`,
    c.new ? "Active subscribers' router accounts are being set up." : "",
  ]
    .filter(Boolean)
    .join("\n");
}
