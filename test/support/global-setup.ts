import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { migrationsFolder, openDatabase } from "../../src/db/client.ts";

/**
 * Builds one migrated database per run and hands its location to the test files, which clone it:
 * creating and migrating a database per file would cost seconds each.
 * - embedded (default): a PGlite data dir dumped to a tarball; each file loads it (~0.7 s);
 * - TEST_DATABASE_URL: a template database; each file runs CREATE DATABASE ... TEMPLATE.
 */
export default async function setup(project: TestProject) {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (serverUrl) {
    const templateName = `tandao_tpl_${process.pid}_${randomBytes(3).toString("hex")}`;
    const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${templateName}"`);
    const url = new URL(serverUrl);
    url.pathname = `/${templateName}`;
    const database = await openDatabase({ databaseUrl: url.toString(), dataDir: "" });
    await database.migrate();
    await database.close();
    project.provide("testDatabase", { kind: "postgres", serverUrl, templateName });
    return async () => {
      const leftovers = await admin<{ datname: string }[]>`
        select datname from pg_database where datname like ${`tandao_t_${process.pid}_%`} or datname = ${templateName}`;
      for (const { datname } of leftovers)
        await admin.unsafe(`drop database if exists "${datname}" with (force)`);
      await admin.end();
    };
  }
  const dir = mkdtempSync(path.join(tmpdir(), "tandao-test-"));
  const pg = await PGlite.create();
  await migrate(drizzle(pg), { migrationsFolder });
  const dump = await pg.dumpDataDir("none");
  await pg.close();
  const templatePath = path.join(dir, "template.tar");
  writeFileSync(templatePath, Buffer.from(await dump.arrayBuffer()));
  project.provide("testDatabase", { kind: "embedded", templatePath });
  return () => rmSync(dir, { recursive: true, force: true });
}

declare module "vitest" {
  export interface ProvidedContext {
    testDatabase:
      | { kind: "postgres"; serverUrl: string; templateName: string }
      | { kind: "embedded"; templatePath: string };
  }
}
