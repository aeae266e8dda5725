import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";

/**
 * A fresh embedded database starts from a migrated copy made once (at `npm install`, or on the
 * first start without one): creating a PostgreSQL cluster from nothing takes seconds, loading the
 * copy well under one. The copy is keyed by the migrations' contents, so a new migration makes a
 * new one, and a stale copy is never used.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const migrationsFolder = path.join(root, "drizzle");
const cacheFolder = path.join(root, "node_modules", ".cache", "tandao");

function migrationsHash(): string {
  const hash = createHash("sha256");
  const files = [
    ...readdirSync(migrationsFolder).filter((f) => f.endsWith(".sql")),
    "meta/_journal.json",
  ].sort();
  for (const file of files) hash.update(file).update(readFileSync(path.join(migrationsFolder, file)));
  return hash.digest("hex").slice(0, 16);
}

export const templatePath = () => path.join(cacheFolder, `embedded-${migrationsHash()}.tar`);

/** The migrated copy for the current migrations, or undefined when none was made yet. */
export function embeddedTemplate(): Blob | undefined {
  const file = templatePath();
  return existsSync(file) ? new Blob([readFileSync(file)]) : undefined;
}

/** Whether `dataDir` already holds an embedded database (then no template is used). */
export function hasEmbeddedDatabase(dataDir: string): boolean {
  return existsSync(path.join(path.resolve(dataDir, "pg"), "PG_VERSION"));
}

/** Makes the migrated copy for the current migrations if there is none. */
export async function makeEmbeddedTemplate(): Promise<string> {
  const file = templatePath();
  if (existsSync(file)) return file;
  const client = await PGlite.create();
  try {
    await migrate(drizzle(client) as never, { migrationsFolder });
    const dump = await client.dumpDataDir("none");
    mkdirSync(cacheFolder, { recursive: true });
    // Written aside and renamed: a start reading it meanwhile never sees half a file.
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
    renameSync(partial, file);
    return file;
  } finally {
    await client.close();
  }
}

// `node --import tsx src/db/embedded-template.ts`: npm's postinstall makes the copy ahead of the first start.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  makeEmbeddedTemplate().then(
    (file) => console.log(`embedded database template: ${path.relative(root, file)}`),
    (error: unknown) => {
      // Only a speed-up: a start without it creates the database from nothing.
      console.warn(
        `embedded database template not made: ${error instanceof Error ? error.message : String(error)}`,
      );
    },
  );
}
