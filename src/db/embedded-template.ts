import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";

/**
 * A fresh embedded database starts as a copy of a migrated one made once, at `npm install`: creating
 * a PostgreSQL cluster from nothing takes seconds, copying the folder of a cleanly closed one a
 * fraction of one. The copy is keyed by the migrations' contents, so a new migration makes a new
 * one, and a stale copy is never used.
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

/** The folder of the migrated database for the current migrations. */
export const templatePath = () => path.join(cacheFolder, `embedded-${migrationsHash()}`);

/**
 * Copies the migrated database into `dataDir` (its `pg` folder, which must not hold a database
 * yet). False when there is no copy for the current migrations: the start creates one from nothing.
 */
export function seedEmbeddedDatabase(dataDir: string): boolean {
  const template = templatePath();
  if (!existsSync(path.join(template, "PG_VERSION"))) return false;
  cpSync(template, path.resolve(dataDir, "pg"), { recursive: true });
  return true;
}

/** Whether `dataDir` already holds an embedded database (then no template is used). */
export function hasEmbeddedDatabase(dataDir: string): boolean {
  return existsSync(path.join(path.resolve(dataDir, "pg"), "PG_VERSION"));
}

/** Makes the migrated copy for the current migrations if there is none. */
export async function makeEmbeddedTemplate(): Promise<string> {
  const folder = templatePath();
  if (existsSync(path.join(folder, "PG_VERSION"))) return folder;
  // Made aside and renamed: a start copying it meanwhile never sees half a database.
  const partial = `${folder}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  const client = await PGlite.create({ dataDir: partial });
  try {
    await migrate(drizzle(client) as never, { migrationsFolder });
  } finally {
    await client.close();
  }
  try {
    renameSync(partial, folder);
  } catch (error) {
    // Another install made it first: theirs is as good.
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(path.join(folder, "PG_VERSION"))) throw error;
  }
  return folder;
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
