import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import type { BillingContext } from "../billing/context.ts";
import { type CallbackKind, recordCallbackOutcome } from "../billing/intents/callbacks.ts";
import { queryRows } from "../db/client.ts";
import type { Logger } from "../logger.ts";

/** What the routes store: the request's kind and its body's text, as received. */
export interface InboundRequest {
  kind: Exclude<CallbackKind, "stk_query">;
  text: string;
}

export interface StoredRequest extends InboundRequest {
  id: number;
  /** When it reached us, if that was before now (a retry, a spooled request): a callback is read as of then. */
  receivedAt?: Date;
}

export interface InboxOptions {
  ctx: BillingContext;
  logger: Logger;
  /**
   * Where a request goes when the database cannot take it (it was away for a moment): one file
   * per request, imported into the inbox by the retry job. Unset: such a request is answered 503.
   */
  spoolDir?: string;
  /** Without a spool: pauses before each further try to store a request (default 0.25, 0.75, 2 s). */
  storeRetryPausesMs?: readonly number[];
}

/**
 * The inbox of inbound M-Pesa requests. A request is stored, in a commit of its own, before it is
 * processed, so an authentic request is never lost: when processing fails (a bug, a deadlock, the
 * database dropping mid-way) it stays here `failed` with its error, and the retry job processes it
 * again (processing is idempotent: unique keys decide what was already credited).
 */
/** How long a retry run holds a request it claimed: longer than processing a claim of them takes, shorter than the 30 s between runs. */
const retryLeaseMs = 25_000;

export class Inbox {
  private readonly waiting: {
    request: InboundRequest;
    resolve: (id: number) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private inserting = false;

  constructor(private readonly options: InboxOptions) {}

  /** Stores the request; its id, or null when it went to the spool instead. Throws when it could be neither. */
  async store(inbound: InboundRequest): Promise<number | null> {
    // A text column holds no NUL character: one in a body is kept visibly instead.
    const request = { ...inbound, text: inbound.text.replaceAll("\0", "\uFFFD") };
    try {
      return await this.insert(request);
    } catch (error) {
      if (!this.options.spoolDir) return this.insertAgain(request, error);
      await this.spool(request);
      this.options.logger.warn(
        { err: error, kind: request.kind },
        "database unavailable: M-Pesa request spooled to disk",
      );
      return null;
    }
  }

  /**
   * Without a spool (the Worker has no disk) a request the database could not take is tried again
   * for a few seconds, within Daraja's patience: it does not send it again, and a paybill payment has
   * no status query to find it by. Given up, the body goes to the error log for an admin to credit.
   */
  private async insertAgain(request: InboundRequest, first: unknown): Promise<number> {
    let error = first;
    for (const pause of this.options.storeRetryPausesMs ?? [250, 750, 2_000]) {
      await new Promise((resolve) => setTimeout(resolve, pause));
      try {
        return await this.insert(request);
      } catch (again) {
        error = again;
      }
    }
    this.options.logger.error(
      { err: error, kind: request.kind, body: request.text.slice(0, 4_000) },
      "M-Pesa request could not be stored: its body is kept here, as M-Pesa will not send it again",
    );
    throw error;
  }

  /**
   * Group commit: requests that arrive while an insert is under way are stored together by the next
   * one, so a burst of callbacks costs a few commits instead of one each; a lone request is stored
   * at once.
   */
  private insert(request: InboundRequest): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.waiting.push({ request, resolve, reject });
      if (!this.inserting) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.inserting = true;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, 500);
      try {
        const ids = await this.insertRows(batch.map((w) => w.request));
        for (const [i, w] of batch.entries()) w.resolve(ids[i]!);
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
    }
    this.inserting = false;
  }

  private async insertRows(requests: InboundRequest[]): Promise<number[]> {
    const { ctx } = this.options;
    const at = ctx.clock.now().toISOString();
    if (requests.length === 1) {
      const [row] = await queryRows<{ id: number }>(
        ctx.db,
        sql`insert into mpesa_callbacks (kind, raw, status, received_at)
            values (${requests[0]!.kind}, ${requests[0]!.text}, 'received', ${at}::timestamptz)
            returning id`,
      );
      return [Number(row!.id)];
    }
    // Ids are drawn in the order the rows are selected (by ordinal), so sorted ids follow the input.
    const rows = await queryRows<{ id: number }>(
      ctx.db,
      sql`insert into mpesa_callbacks (kind, raw, status, received_at)
          select r.kind, r.text, 'received', ${at}::timestamptz
          from rows from (jsonb_to_recordset(${JSON.stringify(requests)}::jsonb) as (kind text, text text))
            with ordinality as r(kind, text, n)
          order by r.n
          returning id`,
    );
    return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  private async spool(request: InboundRequest): Promise<void> {
    const dir = this.options.spoolDir!;
    await mkdir(dir, { recursive: true });
    const name = `${Date.now()}-${randomBytes(6).toString("hex")}`;
    const record = JSON.stringify({ ...request, receivedAt: this.options.ctx.clock.now().toISOString() });
    // Written whole, then renamed: the importer never reads half a request.
    await writeFile(join(dir, `${name}.tmp`), record, { flush: true });
    await rename(join(dir, `${name}.tmp`), join(dir, `${name}.json`));
    // The rename itself is made durable, or a power cut could forget the file.
    const folder = await open(dir, "r");
    try {
      await folder.sync();
    } finally {
      await folder.close();
    }
  }

  /** Spooled requests into the inbox (oldest first); returns them, stored, for processing. */
  async importSpool(): Promise<StoredRequest[]> {
    const dir = this.options.spoolDir;
    if (!dir) return [];
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith(".json")).sort();
    } catch {
      return [];
    }
    const imported: StoredRequest[] = [];
    for (const name of names) {
      const path = join(dir, name);
      let record: InboundRequest & { receivedAt: string };
      try {
        record = JSON.parse(await readFile(path, "utf8"));
      } catch (error) {
        // Kept aside for an admin, so that it does not stop the requests behind it.
        this.options.logger.error({ err: error, file: name }, "unreadable spooled M-Pesa request set aside");
        await rename(path, `${path}.unreadable`).catch(() => undefined);
        continue;
      }
      const [row] = await queryRows<{ id: number }>(
        this.options.ctx.db,
        sql`insert into mpesa_callbacks (kind, raw, status, received_at)
            values (${record.kind}, ${record.text}, 'received', ${record.receivedAt}::timestamptz)
            returning id`,
      );
      // A crash before this unlink imports the request twice: harmless, processing is idempotent.
      await unlink(path);
      imported.push({
        id: Number(row!.id),
        kind: record.kind,
        text: record.text,
        receivedAt: new Date(record.receivedAt),
      });
    }
    return imported;
  }

  /** Processed without settling anything: the request was unreadable, or needs no processing. */
  async markProcessed(
    id: number | null,
    input: { kind: CallbackKind; reference: string | null; body: unknown; flag: string | null },
  ): Promise<void> {
    if (id === null) return;
    await recordCallbackOutcome(this.options.ctx.db, this.options.ctx.clock.now(), { inboxId: id, ...input });
  }

  /** Processing failed: the request stays for the retry job and, after the last try, for an admin. */
  async markFailed(id: number | null, error: unknown, options: { countTry: boolean }): Promise<void> {
    if (id === null) return;
    const message = describeFailure(error).slice(0, 500);
    try {
      await this.options.ctx.db.execute(sql`
        update mpesa_callbacks set status = 'failed', error = ${message},
          attempts = attempts + ${options.countTry ? 1 : 0}::int
        where id = ${id}::int and status <> 'processed'`);
    } catch (markError) {
      // Still `received`: the retry job picks it up all the same.
      this.options.logger.error({ err: markError, inboxId: id }, "could not record a failed M-Pesa request");
    }
  }

  /**
   * Requests waiting longer than `olderThanMs` (not being processed right now by their request),
   * oldest first. Each is counted as a try before it is processed again. After `quickTries` tries a
   * request is claimed once every `slowRetryEveryMs` only, while it is younger than `slowRetryForMs`:
   * it may carry money, so once its cause is fixed it goes through by itself.
   */
  async claimForRetry(
    olderThanMs: number,
    tries: { quickTries: number; slowRetryEveryMs: number; slowRetryForMs: number },
    limit = 100,
  ): Promise<StoredRequest[]> {
    const now = this.options.ctx.clock.now();
    const before = new Date(now.getTime() - olderThanMs).toISOString();
    const leaseUntil = new Date(now.getTime() + retryLeaseMs).toISOString();
    const slowLeaseUntil = new Date(now.getTime() + tries.slowRetryEveryMs).toISOString();
    const slowSince = new Date(now.getTime() - tries.slowRetryForMs).toISOString();
    const rows = await queryRows<{
      id: number;
      kind: InboundRequest["kind"];
      raw: string | null;
      received_at: Date | string;
    }>(
      this.options.ctx.db,
      sql`update mpesa_callbacks m set attempts = m.attempts + 1, status = 'failed',
            error = coalesce(m.error, 'not processed when received'),
            retry_lease_until = case when m.attempts + 1 >= ${tries.quickTries}::int
                                     then ${slowLeaseUntil}::timestamptz else ${leaseUntil}::timestamptz end
          where m.id in (
            select id from mpesa_callbacks
            where status <> 'processed' and received_at <= ${before}::timestamptz
              and (attempts < ${tries.quickTries}::int or received_at >= ${slowSince}::timestamptz)
              and (retry_lease_until is null or retry_lease_until <= ${now.toISOString()}::timestamptz)
            order by id limit ${limit}
            for update skip locked)
          returning m.id, m.kind, m.raw, m.received_at`,
    );
    return rows.map((r) => ({
      id: Number(r.id),
      kind: r.kind,
      text: r.raw ?? "",
      receivedAt: new Date(r.received_at),
    }));
  }
}

/** The database's own reason first (drizzle wraps it in "Failed query: <the whole statement>"). */
function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause;
  if (cause instanceof Error) {
    const code = (cause as Error & { code?: unknown }).code;
    return `${typeof code === "string" ? `${code}: ` : ""}${cause.message} (in: ${error.message.split("\n")[0]})`;
  }
  return error.message;
}
