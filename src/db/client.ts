import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { type SQL, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { type DataDirLockOptions, lockDataDir } from "./data-dir-lock.ts";
import * as schema from "./schema/index.ts";

export type Schema = typeof schema;
/** The database handle the whole application uses: the same API over PGlite and postgres.js. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = PgTransaction<PgQueryResultHKT, Schema>;
/** Anything a query can run on: the database itself or an open transaction. */
export type Executor = Db | Tx;

export const migrationsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../drizzle");

export interface Database {
  db: Db;
  kind: "embedded" | "postgres";
  /** Human-readable location of the data, for the start-up log (never contains a password). */
  location: string;
  migrate(): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl?: string;
  dataDir: string;
  /** A `dumpDataDir()` tarball to start the embedded database from (tests clone a migrated template). */
  embeddedTemplate?: Blob;
  maxConnections?: number;
  /**
   * Runs on an embedded database's folder on disk before it is opened, under its lock: the app
   * starts a new one as a copy of the migrated one `npm install` made (embedded-template.ts).
   */
  beforeOpen?: (dataDir: string) => void;
  /** The embedded database's lock: the clock its heartbeat is written and judged by, and how often. */
  lock?: DataDirLockOptions;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "postgres://(unparseable url)";
  }
}

/**
 * Instances started together (a scaled deploy, a rolling one) would each apply the same pending
 * migrations, and the loser fail at start: one at a time, under a session-level advisory lock
 * held on a connection of its own, so that the pool (of any size) stays free for the migration.
 */
async function migrateAlone(databaseUrl: string, migrate: () => Promise<void>): Promise<void> {
  const lockHolder = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const session = await lockHolder.reserve();
    try {
      await session`select pg_advisory_lock(hashtext('tandao:migrations'))`;
      await migrate();
    } finally {
      session.release();
    }
  } finally {
    // Ending the session releases its lock, whatever the migration did.
    await lockHolder.end({ timeout: 5 });
  }
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const client = postgres(options.databaseUrl, {
      max: options.maxConnections ?? 10,
      onnotice: () => {},
    });
    const db = drizzlePostgres(preparingStatements(client), { schema }) as unknown as Db;
    return {
      db,
      kind: "postgres",
      location: redactUrl(options.databaseUrl),
      migrate: () =>
        migrateAlone(options.databaseUrl!, () => migratePostgres(db as never, { migrationsFolder })),
      close: () => client.end({ timeout: 5 }),
    };
  }
  const dir = path.resolve(options.dataDir, "pg");
  const inMemory = options.dataDir === ":memory:";
  if (!inMemory) mkdirSync(dir, { recursive: true });
  // Taken before the folder is filled or opened: a second process must not touch either.
  const lock = inMemory ? null : lockDataDir(options.dataDir, options.lock);
  let client: PGlite;
  try {
    if (!inMemory) options.beforeOpen?.(options.dataDir);
    client = await PGlite.create({
      dataDir: inMemory ? undefined : dir,
      loadDataDir: options.embeddedTemplate,
    });
  } catch (error) {
    lock?.release();
    throw error;
  }
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  return {
    db,
    kind: "embedded",
    location: inMemory ? "in memory" : dir,
    migrate: () => migratePglite(db as never, { migrationsFolder }),
    async close() {
      try {
        await client.close();
      } finally {
        lock?.release();
      }
    },
  };
}

/**
 * Which query texts get prepared: those with at most `maxParameters` parameters, up to
 * `maxTexts` distinct texts per database handle. A list built into the text (`in ($1, $2, …)`)
 * gives a new text for every length; those lengths stay small, and the cap keeps a batch job's
 * long lists from filling every connection with statements it will not run again. The bound on
 * parameters sits above the largest fixed statement (a payment prompt with its rate limits takes
 * 88): one left unprepared is parsed and planned on every call.
 */
class PreparedTexts {
  private readonly texts = new Set<string>();

  constructor(
    private readonly maxTexts = 500,
    private readonly maxParameters = 128,
  ) {}

  admit(text: string, parameters: number): boolean {
    if (parameters === 0 || parameters > this.maxParameters) return false;
    if (this.texts.has(text)) return true;
    if (this.texts.size >= this.maxTexts) return false;
    this.texts.add(text);
    return true;
  }
}

/**
 * drizzle hands each query to postgres.js as `unsafe(text, params, { prepare: false })` unless the
 * query was given a name. For such a query postgres.js first asks the server for the parameter
 * types (Parse + Describe, wait, then Bind + Execute): two round trips, and the server parses and
 * plans the text every time. Letting postgres.js prepare them keeps each statement on its
 * connection by its text, so a repeated query is one round trip with no parse, and the server
 * reuses its plan. `PreparedTexts` bounds what each connection keeps; postgres.js also replaces
 * each connection within an hour.
 */
function preparingStatements<T extends postgres.Sql>(client: T, admitted = new PreparedTexts()): T {
  type Work = (handle: postgres.Sql) => unknown;
  return new Proxy(client, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (property === "unsafe") {
        return (
          text: string,
          params?: postgres.ParameterOrJSON<never>[],
          options?: postgres.UnsafeQueryOptions,
        ) => target.unsafe(text, params, { ...options, prepare: admitted.admit(text, params?.length ?? 0) });
      }
      if ((property === "begin" || property === "savepoint") && typeof value === "function") {
        // A transaction's queries run on a handle of its own: prepare those too.
        return (...args: unknown[]) => {
          const work = args.pop() as Work;
          return Reflect.apply(value, target, [
            ...args,
            (handle: postgres.Sql) => work(preparingStatements(handle, admitted)),
          ]);
        };
      }
      return value;
    },
  });
}

/** Rows of a raw query, whichever driver ran it (postgres.js returns an array, PGlite `{ rows }`). */
export async function queryRows<T extends Record<string, unknown>>(db: Executor, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}

export async function ping(db: Db): Promise<boolean> {
  const rows = await queryRows<{ ok: number }>(db, sql`select 1 as ok`);
  return rows[0]?.ok === 1;
}
