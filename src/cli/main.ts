import { userInfo } from "node:os";
import { createInterface } from "node:readline/promises";
import { BillingError } from "../billing/context.ts";
import { systemClock } from "../clock.ts";
import { billingSettingsFrom, isSandbox, loadConfig } from "../config.ts";
import { openDatabase } from "../db/client.ts";
import { useSealingKey } from "../db/sealed.ts";
import { createSecretBox, loadSecretKey } from "../lib/secret-box.ts";
import { CliUsageError, runCommand, USAGE } from "./commands.ts";

/**
 * `npm run cli -- <command>`: the set-up steps from a terminal (see commands.ts). It opens the same
 * database as the app: with the embedded database the app must be stopped first (one process at a
 * time); with DATABASE_URL both can run.
 */

const argv = process.argv.slice(2);
if (argv.length === 0 || argv[0] === "help" || argv[0] === "--help") {
  console.log(USAGE);
  process.exit(0);
}

const config = loadConfig();
const sandbox = isSandbox(config);
let database: Awaited<ReturnType<typeof openDatabase>>;
try {
  database = await openDatabase({
    databaseUrl: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    lock: {
      onLost: (holder) => {
        console.error(`The embedded database was taken over by ${holder} while this ran; stopping.`);
        process.exit(1);
      },
    },
  });
  await database.migrate();
} catch (error) {
  console.error(
    `The database could not be opened (${error instanceof Error ? error.message : String(error)}).` +
      (config.DATABASE_URL ? "" : " Is the app running on the embedded database? Stop it first."),
  );
  process.exit(1);
}
const box = createSecretBox(
  loadSecretKey({ secretKey: config.SECRET_KEY, dataDir: config.DATA_DIR, sandbox }),
);
useSealingKey(box);

async function secret(prompt: string): Promise<string> {
  if (process.env.TANDAO_ROUTER_PASSWORD !== undefined) return process.env.TANDAO_ROUTER_PASSWORD;
  const terminal = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
  try {
    return (await terminal.question(prompt)).trim();
  } finally {
    terminal.close();
  }
}

let code = 0;
try {
  await runCommand(
    {
      ctx: { db: database.db, clock: systemClock, settings: billingSettingsFrom(config) },
      box,
      servedCountries: config.SERVED_COUNTRIES,
    },
    { kind: "admin", id: `cli:${userInfo().username}`, channel: "cli" },
    argv,
    { out: (line) => console.log(line), secret },
  );
} catch (error) {
  code = 1;
  if (error instanceof CliUsageError || error instanceof BillingError) console.error(error.message);
  else console.error(error instanceof Error ? error.message : String(error));
} finally {
  await database.close();
}
process.exit(code);
