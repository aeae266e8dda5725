import { readFile, stat, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { eq } from "drizzle-orm";
import type { Actor, BillingContext } from "../billing/context.ts";
import { EXPORT_KINDS, exportCsv, isExportKind } from "../billing/export.ts";
import {
  analyseCustomerImport,
  formatImportReport,
  importCustomers,
  MAX_IMPORT_BYTES,
  megabytes,
} from "../billing/import.ts";
import { formatKes, parseShillings } from "../billing/money.ts";
import { createPlan, listPlans, type PlanInput, updatePlan } from "../billing/plans.ts";
import { createCustomerWithSubscription } from "../billing/subscriptions.ts";
import { listUnmatchedPayments } from "../billing/unmatched.ts";
import { parseTelegramId } from "../bots/admin/parse.ts";
import { addAdminInTx, isRole, listAdmins, removeAdminInTx } from "../bots/admin/roles.ts";
import { type PeriodUnit, type PlanKind, plans } from "../db/schema/index.ts";
import { checkPhone } from "../lib/phone.ts";
import type { SecretBox } from "../lib/secret-box.ts";
import { validityText } from "../menu/plan-text.ts";
import { RouterPool } from "../network/pool.ts";
import { type RouterReconcileReport, reconcileAll, reconcileRouter } from "../network/reconcile.ts";
import { addRouterAudited, findRouterByName, listRouters } from "../network/routers.ts";

/**
 * The set-up steps from a terminal: plans, routers, admins and customers, through the same use-cases
 * as the admin chat (validated, audited, one transaction each). The person at the terminal can read
 * the database anyway, so they act as an owner (`cli:<user>` in the audit log).
 */

export interface CliIo {
  out: (line: string) => void;
  /** A secret (a router's password): from TANDAO_ROUTER_PASSWORD or typed, never an argument. */
  secret: (prompt: string) => Promise<string>;
}

export class CliUsageError extends Error {}

export const USAGE = `tandao <command>

  plans list
  plans add --code home-10 --name "Home 10" [--name-sw "Nyumbani 10"] --kind pppoe|hotspot
            --price 2500 --every 1 --unit months|days|hours --speed 5M/10M [--cap-gb 100] [--hours 2]
  plans edit <code> [--name ..] [--name-sw ..] [--price ..] [--speed ..] [--cap-gb ..] [--active true|false]
  routers list
  routers add --name kibera-1 --host 10.0.0.1 --user tandao [--port 8729] [--tls] [--fingerprint <sha256>]
              (the password from TANDAO_ROUTER_PASSWORD, or typed)
  admins list
  admins add <telegram id> <owner|admin|support|viewer> [name]
  admins remove <telegram id>
  customers add --name "Amina Wekesa" --phone 0712345678 --plan home-10 [--router kibera-1] [--username ..]
  customers import <file.csv> [--commit]  (a dry run, row by row, unless --commit;
            columns account,name,phone,plan,status,expires,router,username,balance)
  export customers|payments|invoices [file.csv]   (to the terminal without a file)
  unmatched list
  reconcile [router name] [--dry]    (a dry run reports the drift and changes nothing)
  migrate                            (also done by every command and by the app at start)`;

/** Whole shillings or shillings and cents, as typed: integer cents, never a float. */
export function shillingsToCents(text: string): number {
  // A comma in an argument is more likely a slip (two values run together) than a thousands mark.
  const cents = text.includes(",") ? null : parseShillings(text);
  if (cents === null) throw new CliUsageError(`not an amount of shillings: ${text}`);
  return cents;
}

const GB = 1_000_000_000;

/** A Telegram user id as the admin chat reads it: newer accounts' ids run past nine digits. */
function telegramIdArg(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const id = parseTelegramId(text);
  if (!id.ok) throw new CliUsageError(id.error);
  return id.value;
}

function wholeNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text)) throw new CliUsageError(`--${name}: a whole number, not ${text}`);
  return Number(text);
}

const planOptions = {
  code: { type: "string" },
  name: { type: "string" },
  "name-sw": { type: "string" },
  kind: { type: "string" },
  price: { type: "string" },
  every: { type: "string" },
  unit: { type: "string" },
  speed: { type: "string" },
  "cap-gb": { type: "string" },
  hours: { type: "string" },
  active: { type: "string" },
} as const;

/**
 * What `plans edit` changes. A plan's kind, period and time limit stay as they are (subscriptions and
 * sold vouchers were made on them): given, they are refused rather than ignored.
 */
const planEditOptions = {
  name: planOptions.name,
  "name-sw": planOptions["name-sw"],
  price: planOptions.price,
  speed: planOptions.speed,
  "cap-gb": planOptions["cap-gb"],
  active: planOptions.active,
} as const;

export interface CliContext {
  ctx: BillingContext;
  /** Seals router passwords (SECRET_KEY). */
  box: SecretBox;
  servedCountries: readonly string[];
}

export async function runCommand(cli: CliContext, actor: Actor, argv: string[], io: CliIo): Promise<void> {
  const { ctx } = cli;
  const [noun, verb, ...rest] = argv;
  const key = `${noun ?? ""} ${verb ?? ""}`;
  switch (key) {
    case "plans list": {
      for (const p of await listPlans(ctx.db))
        io.out(
          `${p.code}\t${p.kind}\t${p.name}\t${formatKes(p.priceCents)} / ${validityText(p)}\t${p.rateLimit}${p.active ? "" : "\t(inactive)"}`,
        );
      return;
    }
    case "plans add": {
      const { values } = parseArgs({ args: rest, options: planOptions, strict: true });
      for (const required of ["code", "name", "kind", "price", "unit", "speed"] as const)
        if (values[required] === undefined) throw new CliUsageError(`--${required} is required`);
      const capGb = wholeNumber("cap-gb", values["cap-gb"]);
      const hours = wholeNumber("hours", values.hours);
      const input: PlanInput = {
        code: values.code!,
        name: values.name!,
        nameSw: values["name-sw"] ?? null,
        kind: values.kind as PlanKind,
        priceCents: shillingsToCents(values.price!),
        periodUnit: values.unit as PeriodUnit,
        periodCount: wholeNumber("every", values.every) ?? 1,
        rateLimit: values.speed!,
        dataCapBytes: capGb === undefined ? null : capGb * GB,
        timeLimitSeconds: hours === undefined ? null : hours * 3600,
      };
      const plan = await createPlan(ctx, actor, input);
      io.out(`plan ${plan.code} created (id ${plan.id})`);
      return;
    }
    case "plans edit": {
      let parsed: { values: { [K in keyof typeof planEditOptions]?: string }; positionals: string[] };
      try {
        parsed = parseArgs({ args: rest, options: planEditOptions, strict: true, allowPositionals: true });
      } catch (error) {
        throw new CliUsageError(
          `${error instanceof Error ? error.message : String(error)}: plans edit changes --name, --name-sw, --price, --speed, --cap-gb and --active (a plan's kind, period and hours stay; add a new plan instead)`,
        );
      }
      const { values, positionals } = parsed;
      const code = positionals[0];
      if (!code) throw new CliUsageError("which plan? plans edit <code> …");
      if (Object.values(values).every((v) => v === undefined))
        throw new CliUsageError(
          "say what to change: --name, --name-sw, --price, --speed, --cap-gb or --active",
        );
      const capGb = wholeNumber("cap-gb", values["cap-gb"]);
      if (values.active !== undefined && values.active !== "true" && values.active !== "false")
        throw new CliUsageError("--active true or false");
      const plan = await updatePlan(ctx, actor, code, {
        ...(values.name !== undefined ? { name: values.name } : {}),
        ...(values["name-sw"] !== undefined ? { nameSw: values["name-sw"] } : {}),
        ...(values.price !== undefined ? { priceCents: shillingsToCents(values.price) } : {}),
        ...(values.speed !== undefined ? { rateLimit: values.speed } : {}),
        ...(capGb !== undefined ? { dataCapBytes: capGb * GB } : {}),
        ...(values.active !== undefined ? { active: values.active === "true" } : {}),
      });
      io.out(`plan ${plan.code} updated: ${plan.name}, ${formatKes(plan.priceCents)}, ${plan.rateLimit}`);
      return;
    }
    case "routers list": {
      for (const r of await listRouters(ctx.db)) io.out(`${r.name}\t${JSON.stringify(r)}`);
      return;
    }
    case "routers add": {
      const { values } = parseArgs({
        args: rest,
        options: {
          name: { type: "string" },
          host: { type: "string" },
          user: { type: "string" },
          port: { type: "string" },
          tls: { type: "boolean" },
          fingerprint: { type: "string" },
        },
        strict: true,
      });
      if (!values.name || !values.host || !values.user)
        throw new CliUsageError("--name, --host and --user are required");
      const password = await io.secret(`Password of ${values.user} on ${values.host}: `);
      if (password === "") throw new CliUsageError("a router password is required");
      const port = wholeNumber("port", values.port);
      const router = await ctx.db.transaction((tx) =>
        addRouterAudited(tx, cli.box, actor, ctx.clock.now(), {
          name: values.name!,
          host: values.host!,
          username: values.user!,
          password,
          ...(port !== undefined ? { port } : {}),
          ...(values.tls ? { tls: true } : {}),
          ...(values.fingerprint ? { tlsFingerprint: values.fingerprint } : {}),
        }),
      );
      io.out(`router ${values.name} added (id ${router.id})`);
      return;
    }
    case "admins list": {
      for (const a of await listAdmins(ctx.db)) io.out(`${a.telegramId}\t${a.role}\t${a.name}`);
      return;
    }
    case "admins add": {
      const [id, role, ...name] = rest;
      const telegramId = telegramIdArg(id);
      if (telegramId === undefined || !role || !isRole(role))
        throw new CliUsageError("admins add <telegram id> <owner|admin|support|viewer> [name]");
      const outcome = await ctx.db.transaction((tx) =>
        addAdminInTx(tx, ctx.clock.now(), terminalOwner, { telegramId, role, name: name.join(" ") }),
      );
      io.out(`admin ${telegramId}: ${outcome}`);
      return;
    }
    case "admins remove": {
      const telegramId = telegramIdArg(rest[0]);
      if (telegramId === undefined) throw new CliUsageError("admins remove <telegram id>");
      await ctx.db.transaction((tx) =>
        removeAdminInTx(tx, ctx.clock.now(), terminalOwner, telegramId, undefined),
      );
      io.out(`admin ${telegramId} removed`);
      return;
    }
    case "customers add": {
      const { values } = parseArgs({
        args: rest,
        options: {
          name: { type: "string" },
          phone: { type: "string" },
          plan: { type: "string" },
          router: { type: "string" },
          username: { type: "string" },
        },
        strict: true,
      });
      if (!values.name || !values.phone || !values.plan)
        throw new CliUsageError("--name, --phone and --plan are required");
      const phone = checkPhone(values.phone, cli.servedCountries);
      if (phone.kind !== "served")
        throw new CliUsageError(`not a phone number this ISP serves: ${values.phone}`);
      const [plan] = await ctx.db.select().from(plans).where(eq(plans.code, values.plan));
      if (!plan) throw new CliUsageError(`no plan with code ${values.plan}`);
      const router = values.router ? await findRouterByName(ctx.db, values.router) : null;
      if (values.router && !router) throw new CliUsageError(`no router named ${values.router}`);
      const { customer } = await createCustomerWithSubscription(ctx, actor, {
        name: values.name,
        phone: phone.e164,
        planId: plan.id,
        routerId: router?.id ?? null,
        ...(values.username ? { networkUsername: values.username } : {}),
      });
      io.out(`customer ${customer.accountNumber} added: ${customer.name}, ${plan.name}`);
      return;
    }
    case "customers import":
      return importFromCli(cli, actor, rest, io);
    case "unmatched list": {
      const waiting = await listUnmatchedPayments(ctx.db);
      if (waiting.length === 0) io.out("no unmatched payments");
      for (const p of waiting)
        io.out(
          `${p.providerRef}\t${formatKes(p.amountCents)}\t${p.accountReference ?? ""}\t${p.phone ?? ""}\t${p.holdReason ?? ""}`,
        );
      return;
    }
    default: {
      if (noun === "migrate") {
        io.out("database migrated");
        return;
      }
      if (noun === "reconcile") return reconcileFromCli(cli, argv.slice(1), io);
      if (noun === "export") return exportFromCli(cli, argv.slice(1), io);
      throw new CliUsageError(USAGE);
    }
  }
}

async function reconcileFromCli(cli: CliContext, args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { dry: { type: "boolean" } },
    strict: true,
    allowPositionals: true,
  });
  const dryRun = values.dry ?? false;
  const pool = new RouterPool({ db: cli.ctx.db, box: cli.box, clock: cli.ctx.clock });
  try {
    const deps = { db: cli.ctx.db, clock: cli.ctx.clock, pool };
    const name = positionals[0];
    let reports: RouterReconcileReport[];
    if (name) {
      const router = await findRouterByName(cli.ctx.db, name);
      if (!router) throw new CliUsageError(`no router named ${name}`);
      reports = [await reconcileRouter(deps, router.id, { dryRun })];
    } else {
      const run = await reconcileAll(deps, { dryRun });
      if (run.status === "skipped") throw new CliUsageError("a reconciliation is already running");
      reports = run.reports;
    }
    for (const report of reports)
      io.out(
        `${report.routerName}: ${report.ok ? "ok" : `failed (${report.error})`}${dryRun ? " (dry run)" : ""} ${JSON.stringify(report.counts)}`,
      );
  } finally {
    await pool.close();
  }
}

async function importFromCli(cli: CliContext, actor: Actor, args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { commit: { type: "boolean" } },
    strict: true,
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file) throw new CliUsageError("which file? customers import <file.csv> [--commit]");
  const size = (await stat(file)).size;
  if (size > MAX_IMPORT_BYTES)
    throw new CliUsageError(`${file} is ${megabytes(size)}, over ${megabytes(MAX_IMPORT_BYTES)}: split it`);
  const content = await readFile(file);
  const options = { servedCountries: cli.servedCountries, fileName: file };
  const report = values.commit
    ? await importCustomers(cli.ctx, actor, content, options)
    : await analyseCustomerImport(cli.ctx, content, options);
  if (report.fileError) throw new CliUsageError(`${file}: ${report.fileError}`);
  for (const line of formatImportReport(report, { allRows: true })) io.out(line);
}

async function exportFromCli(cli: CliContext, args: string[], io: CliIo): Promise<void> {
  const [kind, file, ...extra] = args;
  if (!kind || !isExportKind(kind) || extra.length > 0)
    throw new CliUsageError(`export ${EXPORT_KINDS.join("|")} [file.csv]`);
  const { csv, rows } = await exportCsv(cli.ctx.db, cli.ctx.settings.timezone, kind);
  if (file) {
    await writeFile(file, csv);
    io.out(`${rows} ${kind} written to ${file}`);
  } else {
    io.out(csv.replace(/\n$/, ""));
  }
}

/** The terminal acts as an owner for admin management (id 0: no Telegram user has it). */
const terminalOwner = { telegramId: 0, role: "owner" as const, name: "terminal" };
