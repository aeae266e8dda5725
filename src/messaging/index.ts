import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.ts";
import { type Config, signingOf } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { type AtFake, startAtFake } from "./at-fake.ts";
import { createAtSmsSender, type SmsSender } from "./sms-client.ts";
import { type SmsWorker, startSmsWorker } from "./sms-worker.ts";

export interface Messaging {
  sender: SmsSender;
  worker: SmsWorker | null;
  /** The built-in Africa's Talking stand-in, when no AT_API_KEY is configured. */
  fake: AtFake | null;
  stop(): Promise<void>;
}

/**
 * Starts SMS delivery: the `message_outbox` worker sending through the `africastalking` package. Without
 * AT_API_KEY the package talks to the built-in fake on 127.0.0.1, which logs every SMS it receives.
 */
export async function startMessaging(deps: {
  config: Config;
  db: Db;
  clock: Clock;
  logger: Logger;
  /** Off in tests that drive the worker by hand. */
  background?: boolean;
}): Promise<Messaging> {
  const { config } = deps;
  const logger = deps.logger.child({ module: "sms" });
  let fake: AtFake | null = null;
  let sender: SmsSender;
  if (config.mode === "sandbox") {
    // Not Africa's Talking's own `sandbox` username: that one switches the package to their test host.
    const username = "tandao-fake";
    const apiKey = randomBytes(16).toString("hex");
    // The fake does not log what it receives: a message can carry a subscriber's password. The
    // worker logs what it sent instead, with secrets masked (below).
    fake = await startAtFake({ username, apiKey });
    sender = createAtSmsSender({ username, apiKey, senderId: config.AT_SENDER_ID, smsUrl: fake.smsUrl });
    logger.info(
      { url: fake.smsUrl },
      "SMS sandbox: messages go to the built-in Africa's Talking fake and are logged",
    );
  } else {
    // Production mode has checked these are set (src/mode.ts).
    if (!config.AT_USERNAME || !config.AT_API_KEY)
      throw new Error("production needs AT_USERNAME and AT_API_KEY");
    sender = createAtSmsSender({
      username: config.AT_USERNAME,
      apiKey: config.AT_API_KEY,
      senderId: config.AT_SENDER_ID,
      smsUrl: config.AT_SMS_URL,
    });
  }
  const worker =
    (deps.background ?? true)
      ? startSmsWorker({
          db: deps.db,
          clock: deps.clock,
          sender,
          logger,
          ...signingOf(config),
          maxAttempts: config.SMS_MAX_ATTEMPTS,
          ...(config.ADMIN_PHONE ? { adminPhone: config.ADMIN_PHONE } : {}),
          ...(fake
            ? {
                onSent: (sms: { to: string; text: string }) =>
                  logger.info({ to: sms.to }, `SMS to ${sms.to}: ${sms.text}`),
              }
            : {}),
        })
      : null;
  return {
    sender,
    worker,
    fake,
    async stop() {
      await worker?.stop();
      await fake?.close();
    },
  };
}
