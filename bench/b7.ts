/**
 * B7: 200 Telegram chats walking the subscriber menu at once through the bot's webhook: real HTTP
 * posts of Update JSON (with the secret token header) to the app's `/hooks/tg` route on a real port,
 * the bot answering through the fake Bot API (`client.apiRoot`) over real HTTP, against PostgreSQL.
 *
 * Three processes: this one (database, seeding), the app (hono + grammY + the chat menu), and the
 * load generator, which holds both the simulated chats and the fake Bot API, so an update's post and
 * the bot's answer reaching the fake are timed on one clock, and neither shares the app's event loop.
 * Latency: from when the update was due (open loop, as B3) to the first `sendMessage` or
 * `editMessageText` for that chat arriving at the fake; a chat has one update in flight at a time.
 *
 * `B7_DEBUG=1` prints each kind's p50/p99, updates answered with no message, and each process's CPU
 * time; `B7_PROF=1` writes a CPU profile of the app process to /tmp/prof (`B7_PROF_LOAD=1`: of the
 * load generator, to /tmp/profl); `B7_HEAP_SAMPLE` samples the app's heap (sampleHeapAfterWarmUp);
 * `B7_LOG=error` shows the app's errors; `B7_TRACE=<file>` writes each update's due time and webhook
 * latency (ms) there, to see a backlog drain over time; `B7_NODE_FLAGS` adds V8/Node flags to the
 * app process (say `--trace-gc-nvp`); `B7_POOL` (default: the app's own pool size), `B7_CHATS`
 * (default 200), `B7_WARMUP_MS` (default 10,000) and `B7_DURATION_MS` (default 15,000) as named.
 */

import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { EventLoopUtilization } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { sql } from "drizzle-orm";
import type { UserFromGetMe } from "grammy/types";
import { createApp } from "../src/app.ts";
import { defaultBillingSettings } from "../src/billing/context.ts";
import { createChatMenu } from "../src/bots/chat-menu.ts";
import { CHAT_CONTENT_TEMPLATE } from "../src/bots/chat-outbox.ts";
import { startChatWorker } from "../src/bots/chat-worker.ts";
import { createBot } from "../src/bots/telegram/bot.ts";
import { type SentCall, startFakeTelegram } from "../src/bots/telegram/fake-api.ts";
import { createTelegramRoutes } from "../src/bots/telegram/routes.ts";
import { createTelegramSender } from "../src/bots/telegram/sender.ts";
import { systemClock } from "../src/clock.ts";
import { type Db, openDatabase } from "../src/db/client.ts";
import { chatLinks } from "../src/db/schema/index.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { createLogger } from "../src/logger.ts";
import { createMenuServices } from "../src/menu/services.ts";
import { serveBare } from "./bare-http-server.ts";
import { KeepAliveClient } from "./keep-alive-client.ts";
import { createBenchDatabase, percentile, round, seedMenuCustomers } from "./support.ts";

const CHATS = Number(process.env.B7_CHATS ?? 200);
/**
 * Each chat sends its next update on a fixed beat (`B7_PACE_MS`, default 200 ms: 200 chats offer
 * 1,000 updates/s, the rate the goal names) whatever the previous answer's latency (open loop), so the
 * p99 printed is the p99 at that rate. `B7_PACE_MS=160` offers 1,250/s; `B7_PACE_MS=0` sends each
 * update as soon as the previous one was answered (closed loop, the most the app takes).
 */
const PACE_MS = Number(process.env.B7_PACE_MS ?? 200);
const CUSTOMERS = 400;
const DURATION_MS = Number(process.env.B7_DURATION_MS ?? 15_000);
/**
 * Not measured: the chats join one after the other over the first half (a ramp, as traffic builds
 * in life), so a cold process (code not yet optimised, statements not yet prepared) is not handed
 * 200 chats at once. Ten seconds, because on this 2-core machine V8 keeps compiling the app's hot
 * code for about eight seconds after the load starts (its compiler threads take 0.5-0.6 of a core
 * meanwhile, and the backlog this builds takes seconds to drain): what is measured is the service
 * as it runs, not its first seconds. BENCHMARKS.md records cold starts (`B7_WARMUP_MS=4000`) too.
 */
const WARMUP_MS = Number(process.env.B7_WARMUP_MS ?? 10_000);
const SECRET = "b7-webhook-secret-0123456789";
/** One chat in four is a visitor (no link); the others are linked to a customer. */
const VISITOR_EVERY = 4;
/** Telegram user ids of the simulated chats. */
const chatIdOf = (n: number) => 500_000_000 + n;

/**
 * What people do, as in B3: each walk starts with `/start`; a key is pressed as the button of that
 * key on the screen shown, or typed when the screen has no such button (an amount).
 */
const customerWalks = [
  ["1", "0", "2", "1"],
  ["2", "2", "500", "1"],
  ["3", "1", "1"],
  ["4", "1", "0", "0", "6"],
  ["5", "2", "1", "1"],
];
const visitorWalks = [
  ["1", "98", "2", "1"],
  ["2", "0", "4"],
];

interface LoadResult {
  latencies: number[];
  webhookLatencies: number[];
  elapsed: number;
  updates: number;
  noReply: number;
  non200: number;
  walks: number;
  byKind: Record<string, number[]>;
}

/**
 * PPPoE passwords are sealed at rest: the app process must open what this one sealed, so all three
 * share one key (support.ts gives each process a random one of its own).
 */
const sealingKey = process.env.B7_SEALING_KEY ?? randomBytes(32).toString("hex");
useSealingKey(createSecretBox(Buffer.from(sealingKey, "hex")));

export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl, 20);
  const db = database.db;
  const customerIds = await seedMenuCustomers(db, CUSTOMERS);
  // Linked chats, as if each had shared its contact once.
  const links = [];
  for (let n = 0; n < CHATS; n++)
    if (n % VISITOR_EVERY !== 0)
      links.push({
        channel: "telegram" as const,
        chatId: String(chatIdOf(n)),
        customerId: customerIds[n % CUSTOMERS]!,
        method: "contact",
      });
  if (links.length > 0) await db.insert(chatLinks).values(links);
  await seedChatHistory(db);
  const [{ name }] = (await db.execute(sql`select current_database() as name`)) as unknown as [
    { name: string },
  ];
  const appUrl = new URL(databaseUrl);
  appUrl.pathname = `/${name}`;

  const self = fileURLToPath(import.meta.url);
  const execArgv = ["--import", "tsx"];
  // The app as `npm start` and the Docker image run it (package.json, Dockerfile).
  const appExecArgv = ["--max-semi-space-size=64", ...execArgv];
  const children: ChildProcess[] = [];
  const firstMessage = <T>(child: ChildProcess) =>
    new Promise<T>((resolve, reject) => {
      child.once("message", (message) => resolve(message as T));
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`child process exited with ${code}`)));
    });
  try {
    // The load generator first: the fake Bot API it holds is the app's apiRoot.
    const loader = fork(self, [], {
      execArgv: [
        ...execArgv,
        ...(process.env.B7_PROF_LOAD ? ["--cpu-prof", "--cpu-prof-dir=/tmp/profl"] : []),
      ],
      env: { ...process.env, B7_ROLE: "load" },
    });
    children.push(loader);
    const fake = await firstMessage<{ apiRoot: string; token: string; botInfo: UserFromGetMe }>(loader);
    const app = fork(self, [], {
      execArgv: [
        ...appExecArgv,
        ...(process.env.B7_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
        ...(process.env.B7_PROF ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] : []),
      ],
      env: {
        ...process.env,
        B7_ROLE: "app",
        B7_SEALING_KEY: sealingKey,
        B7_APP_DATABASE_URL: appUrl.toString(),
        B7_FAKE: JSON.stringify(fake),
      },
    });
    children.push(app);
    const { port } = await firstMessage<{ port: number }>(app);
    const done = firstMessage<LoadResult>(loader);
    loader.send({ port });
    const result = await done;
    // Its profile is written as it exits, which it does once it has sent the result.
    if (process.env.B7_PROF_LOAD) await new Promise((r) => loader.once("exit", r));
    const latencies = result.latencies.sort((a, b) => a - b);
    const webhook = result.webhookLatencies.sort((a, b) => a - b);
    if (process.env.B7_DEBUG)
      for (const [k, v] of Object.entries(result.byKind)) {
        v.sort((a, b) => a - b);
        console.error(k.padEnd(16), v.length, round(percentile(v, 50)), round(percentile(v, 99)));
      }
    return {
      updates_per_second: round(result.updates / (result.elapsed / 1000), 0),
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      max_ms: round(latencies.at(-1) ?? 0),
      webhook_p50_ms: round(percentile(webhook, 50)),
      webhook_p99_ms: round(percentile(webhook, 99)),
      updates: result.updates,
      no_reply: result.noReply,
      non_200: result.non200,
      walks: result.walks,
      chats: CHATS,
      pace_ms: PACE_MS,
      offered_per_second: PACE_MS > 0 ? round((CHATS * 1000) / PACE_MS, 0) : null,
    };
  } finally {
    for (const child of children) child.kill();
    await database.close();
  }
}

/**
 * The chat tables as an ISP's are after some weeks (updates handled, answers sent: HISTORY of
 * each), with statistics gathered as autovacuum would: the plans the app's statements get are those
 * of a database in use, not of empty tables that then grow under a plan made for them empty.
 */
const HISTORY = 50_000;

async function seedChatHistory(db: Db) {
  // Row n of the history, 50 ms after row n - 1, starting 30 days ago.
  const historyAt = sql`select now() - interval '30 days' + n * interval '50 ms' as at`;
  await db.execute(sql`
    insert into chat_inbox (channel, external_id, chat_id, payload, status, attempts, received_at, handled_at)
    select 'telegram', 'history-' || n, (${chatIdOf(0)} + n % ${CHATS})::text,
           jsonb_build_object('update_id', n), 'done', 1, t.at, t.at
    from generate_series(1, ${HISTORY}) as n, lateral (${historyAt}) t`);
  await db.execute(sql`
    insert into message_outbox (channel, recipient, template, content, status, attempts, next_attempt_at,
      created_at, sent_at, provider_message_id)
    select 'telegram', (${chatIdOf(0)} + n % ${CHATS})::text, ${CHAT_CONTENT_TEMPLATE},
           jsonb_build_object('kind', 'text', 'text', 'Asante'), 'done', 1, t.at, t.at, t.at, n::text
    from generate_series(1, ${HISTORY}) as n, lateral (${historyAt}) t`);
  await db.execute(sql`analyze`);
}

interface Stamped {
  call: SentCall;
  at: number;
}

/** The load generator: the fake Bot API, then CHATS chats walking the menu until the time is up. */
async function load() {
  const fake = await startFakeTelegram();
  // The fake's calls served over a bare HTTP server (see bare-http-server.ts); `B7_FAKE_HTTP=hono`
  // serves them through the fake's own hono server instead.
  const bare = process.env.B7_FAKE_HTTP === "hono" ? null : await serveBare(fake.callJson);
  const apiRoot = bare ? `http://127.0.0.1:${bare.port}` : fake.apiRoot;
  // Every accepted call, stamped as it arrives, handed to the chat waiting for it.
  const inbox = new Map<number, Stamped[]>();
  /** Per chat: told when the bot's answer (a message or an edit) reaches the fake. */
  const waiting = new Map<number, () => void>();
  const calls = fake.calls;
  calls.push = (...items: SentCall[]) => {
    const at = performance.now();
    for (const call of items) {
      const chat =
        typeof call.payload.chat_id === "number"
          ? call.payload.chat_id
          : Number(/^c(\d+)_/.exec(String(call.payload.callback_query_id ?? ""))?.[1]);
      inbox.get(chat)?.push({ call, at });
      if (call.method === "sendMessage" || call.method === "editMessageText") waiting.get(chat)?.();
    }
    // Not kept: 15 s of calls would only grow the heap of the process that times them.
    return 0;
  };
  process.send!({ apiRoot, token: fake.token, botInfo: fake.botInfo });
  const port = await new Promise<number>((resolve) =>
    process.once("message", (message: { port: number }) => resolve(message.port)),
  );

  const latencies: number[] = [];
  const webhookLatencies: number[] = [];
  const trace: string[] = [];
  const byKind: Record<string, number[]> = {};
  const loadStarted = performance.now();
  const measureFrom = loadStarted + WARMUP_MS;
  const measureUntil = measureFrom + DURATION_MS;
  let updates = 0;
  let noReply = 0;
  let non200 = 0;
  let walks = 0;
  let updateId = 0;
  const now = () => Math.floor(Date.now() / 1000);
  const botFrom = { id: fake.botInfo.id, is_bot: true, first_name: "Tandao" };

  async function chat(n: number) {
    const id = chatIdOf(n);
    // One of the few keep-alive connections Telegram holds open to a webhook.
    const connection = new KeepAliveClient(port, "/hooks/tg", [
      "Content-Type: application/json",
      `X-Telegram-Bot-Api-Secret-Token: ${SECRET}`,
    ]);
    const from = { id, is_bot: false, first_name: "Achieng" };
    const privateChat = { id, type: "private", first_name: "Achieng" };
    const visitor = n % VISITOR_EVERY === 0;
    const calls: Stamped[] = [];
    inbox.set(id, calls);
    /** The newest message with buttons the bot showed in this chat. */
    let menu: { messageId: number; buttons: { callback_data: string }[] } | null = null;
    let walkNo = n;
    /** A visitor's `/start` is answered by the menu and then a hint to share their contact. */
    const expectedReplies = (kind: string) => (visitor && kind === "start" ? 2 : 1);
    // Spread over one beat (open loop: an even load), and joining in turn over the ramp.
    const joins = Math.floor((n * WARMUP_MS) / 2 / CHATS / Math.max(PACE_MS, 1)) * Math.max(PACE_MS, 1);
    let beat = loadStarted + joins + (n * Math.max(PACE_MS, 1)) / CHATS;

    async function send(update: Record<string, unknown>, kind: string) {
      const due = beat;
      if (due > performance.now()) await new Promise((r) => setTimeout(r, due - performance.now()));
      beat = PACE_MS > 0 ? beat + PACE_MS : performance.now();
      calls.length = 0;
      const started = Math.min(due, performance.now());
      // The answer is sent by the chat delivery worker after the update was handled: it may reach
      // the fake after the webhook was answered, so the chat waits for it (10 s at most).
      let timer: NodeJS.Timeout | undefined;
      const replied = new Promise<void>((resolve) => {
        waiting.set(id, resolve);
        timer = setTimeout(resolve, 10_000);
      });
      const { status } = await connection.post(JSON.stringify({ update_id: ++updateId, ...update }));
      const answered = performance.now();
      const replies = () =>
        calls.filter((c) => c.call.method === "sendMessage" || c.call.method === "editMessageText").length;
      if (status === 200 && replies() === 0) await replied;
      // The rest of a reply of several messages, before the next update: one arriving later would be
      // taken for the next update's answer, and the chat would press buttons one screen behind.
      while (status === 200 && replies() > 0 && replies() < expectedReplies(kind)) {
        const more = new Promise<void>((resolve) => {
          waiting.set(id, resolve);
          timer = setTimeout(resolve, 10_000);
        });
        const before = replies();
        await more;
        clearTimeout(timer);
        if (replies() === before) break;
      }
      clearTimeout(timer);
      waiting.delete(id);
      if (PACE_MS === 0) beat = answered;
      const reply = calls.find((c) => c.call.method === "sendMessage" || c.call.method === "editMessageText");
      // Warm-up included: the trace shows how the load was taken from the start.
      if (process.env.B7_TRACE)
        trace.push(`${Math.round(started - loadStarted)} ${Math.round(answered - started)} ${kind}`);
      if (due >= measureFrom && due < measureUntil) {
        updates++;
        if (status !== 200) non200++;
        webhookLatencies.push(answered - started);
        if (reply) {
          latencies.push(reply.at - started);
          if (process.env.B7_DEBUG) {
            const seen = byKind[kind] ?? [];
            seen.push(reply.at - started);
            byKind[kind] = seen;
          }
        } else {
          noReply++;
          if (process.env.B7_DEBUG) {
            const key = `none:${kind}:${calls.map((c) => `${c.call.method}${c.call.payload.text ? `+${String(c.call.payload.text).slice(0, 30)}` : ""}`).join(",")}`;
            byKind[key] = [...(byKind[key] ?? []), answered - started].slice(-1000);
          }
        }
      }
      // The menu to press next: the newest message carrying buttons.
      for (const { call } of calls) {
        const markup = call.payload.reply_markup as
          | { inline_keyboard?: { callback_data: string }[][] }
          | undefined;
        if (markup?.inline_keyboard && call.messageId !== undefined)
          menu = { messageId: call.messageId, buttons: markup.inline_keyboard.flat() };
        else if (call.method === "sendMessage" || call.method === "editMessageText") menu = null;
      }
    }

    const text = (t: string) =>
      send(
        {
          message: {
            message_id: ++updateId,
            date: now(),
            chat: privateChat,
            from,
            text: t,
            ...(t.startsWith("/")
              ? { entities: [{ type: "bot_command", offset: 0, length: t.length }] }
              : {}),
          },
        },
        t.startsWith("/") ? "start" : "text",
      );

    while (performance.now() < measureUntil) {
      const walk = (visitor ? visitorWalks : customerWalks)[walkNo++ % (visitor ? 2 : 5)]!;
      walks++;
      await text("/start");
      for (const key of walk) {
        if (performance.now() >= measureUntil) break;
        const current = menu as { messageId: number; buttons: { callback_data: string }[] } | null;
        if (!current) break;
        const button = current.buttons.find((b) => b.callback_data.endsWith(`:${key}`));
        if (!button) {
          await text(key);
          continue;
        }
        const message = fake.message(current.messageId);
        await send(
          {
            callback_query: {
              id: `c${id}_${updateId}`,
              from,
              chat_instance: `ci${id}`,
              message: { ...message, from: botFrom },
              data: button.callback_data,
            },
          },
          "press",
        );
      }
    }
    connection.close();
  }

  await Promise.all(Array.from({ length: CHATS }, (_, n) => chat(n)));
  if (process.env.B7_TRACE) (await import("node:fs")).writeFileSync(process.env.B7_TRACE, trace.join("\n"));
  const result: LoadResult = {
    latencies,
    webhookLatencies,
    elapsed: DURATION_MS,
    updates,
    noReply,
    non200,
    walks,
    byKind,
  };
  await bare?.close();
  await fake.close();
  if (process.env.B7_DEBUG) console.error("load process CPU (µs):", JSON.stringify(process.cpuUsage()));
  return result;
}

/** The app: hono with the Telegram webhook mounted as in main.ts, the bot using the fake Bot API. */
async function serveApp(
  databaseUrl: string,
  fake: { apiRoot: string; token: string; botInfo: UserFromGetMe },
) {
  const database = await openDatabase({
    databaseUrl,
    dataDir: "",
    // The pool src/main.ts opens (client.ts's default) unless B7_POOL says otherwise.
    ...(process.env.B7_POOL ? { maxConnections: Number(process.env.B7_POOL) } : {}),
  });
  const db = database.db;
  const logger = createLogger(process.env.B7_LOG ?? "silent");
  const ctx = { db, clock: systemClock, settings: defaultBillingSettings };
  // Answers are outbox rows: the chat delivery worker sends them as soon as they are queued.
  const worker = startChatWorker({
    db,
    clock: systemClock,
    senders: [createTelegramSender({ token: fake.token, apiRoot: fake.apiRoot })],
    logger,
    isp: "Bench Net",
  });
  const chatMenu = createChatMenu({
    db,
    onQueued: worker.kick,
    sendAtOnce: worker,
    services: createMenuServices(ctx),
    settings: {
      isp: "Bench Net",
      support: "0700 000 000",
      timezone: "Africa/Nairobi",
      minPayCents: 1_000,
      maxPayCents: 150_000_00,
    },
    logger,
    clock: systemClock,
  });
  const bot = createBot({
    token: fake.token,
    db,
    chatMenu,
    logger,
    apiRoot: fake.apiRoot,
    botInfo: fake.botInfo,
    onQueued: worker.kick,
  });
  const app = createApp({ db, logger });
  let loadStarted: EventLoopUtilization | undefined;
  const heapSampling = process.env.B7_HEAP_SAMPLE ? await sampleHeapAfterWarmUp() : null;
  app.use("*", async (_c, next) => {
    if (!loadStarted) {
      loadStarted = performance.eventLoopUtilization();
      heapSampling?.loadStarted();
    }
    await next();
  });
  app.route(
    "/hooks/tg",
    createTelegramRoutes({ bot, secretToken: SECRET, inbox: { db, clock: systemClock } }),
  );
  serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => process.send!({ port: info.port }));
  // A clean exit, so `--cpu-prof` writes its profile.
  process.on("SIGTERM", () => {
    if (process.env.B7_DEBUG) {
      console.error("app process CPU (µs):", JSON.stringify(process.cpuUsage()));
      // How much of the time under load the event loop was busy: near 1, the app is the bottleneck.
      const busy = performance.eventLoopUtilization(loadStarted).utilization;
      console.error("app event loop utilisation under load:", busy.toFixed(2));
    }
    void (heapSampling?.write() ?? Promise.resolve())
      .then(() => database.close())
      .finally(() => process.exit(0));
  });
}

/**
 * `B7_HEAP_SAMPLE=1`: a sampled heap profile of the app under measured load, by allocating stack, to
 * /tmp/b7.heapprofile (Chrome's DevTools opens it). It keeps what a scavenge did not collect: what
 * was promoted to the old generation and died there (each such object costs two copies and brings
 * the next full collection closer), with the young garbage a full collection happened to find.
 * `B7_HEAP_SAMPLE=all` keeps every sampled allocation: where the bytes each update allocates go.
 */
async function sampleHeapAfterWarmUp() {
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  session.connect();
  let started: Promise<unknown> | undefined;
  return {
    loadStarted() {
      setTimeout(() => {
        started = session.post("HeapProfiler.startSampling", {
          samplingInterval: 16_384,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: process.env.B7_HEAP_SAMPLE === "all",
        });
      }, WARMUP_MS);
    },
    async write() {
      if (!started) return;
      await started;
      const { profile } = await session.post("HeapProfiler.stopSampling");
      (await import("node:fs")).writeFileSync("/tmp/b7.heapprofile", JSON.stringify(profile));
    },
  };
}

if (process.env.B7_ROLE === "app" && process.send)
  await serveApp(process.env.B7_APP_DATABASE_URL!, JSON.parse(process.env.B7_FAKE!));

if (process.env.B7_ROLE === "load" && process.send) {
  const result = await load();
  process.send(result, () => process.exit(0));
}
