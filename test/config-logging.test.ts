import { GrammyError, HttpError } from "grammy";
import { describe, expect, it } from "vitest";
import { isSandbox, loadConfig, signingOf } from "../src/config.ts";
import { redactUrl } from "../src/db/client.ts";
import { capturingLogger } from "./support/logs.ts";

describe("configuration", () => {
  it("starts with nothing set: port 3000, data in ./data, embedded database, sandbox", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ PORT: 3000, DATA_DIR: "./data", DUNNING_GRACE_DAYS: 1 });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.DUNNING_REMINDER_DAYS).toEqual([-3, -1, 0]);
    expect(isSandbox(config)).toBe(true);
  });

  it("names the setting that is wrong", () => {
    expect(() => loadConfig({ PORT: "eighty" })).toThrow(/PORT/);
    expect(() => loadConfig({ DATABASE_URL: "not a url" })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ DUNNING_REMINDER_DAYS: "-3,soon" })).toThrow(/DUNNING_REMINDER_DAYS/);
    expect(() => loadConfig({ DUNNING_REMINDER_DAYS: "d,-dd" })).toThrow(/DUNNING_REMINDER_DAYS/);
    expect(loadConfig({ DUNNING_REMINDER_DAYS: "-7,-3,0" }).DUNNING_REMINDER_DAYS).toEqual([-7, -3, 0]);
    expect(() => loadConfig({ TIMEZONE: "Nairobi" })).toThrow(/TIMEZONE.*time zone name/s);
    // A command must end well before the provisioning lease that guards it (network/worker.ts).
    expect(() => loadConfig({ ROUTER_COMMAND_TIMEOUT_MS: "60000" })).toThrow(/ROUTER_COMMAND_TIMEOUT_MS/);
    expect(loadConfig({ ROUTER_COMMAND_TIMEOUT_MS: "30000" }).ROUTER_COMMAND_TIMEOUT_MS).toBe(30_000);
    expect(() => loadConfig({ RECONCILE_CRON: "every 15 minutes" })).toThrow(
      /RECONCILE_CRON.*cron schedule/s,
    );
    expect(loadConfig({ TIMEZONE: "Africa/Kampala", RECONCILE_CRON: "0 */2 * * *" })).toMatchObject({
      TIMEZONE: "Africa/Kampala",
      RECONCILE_CRON: "0 */2 * * *",
    });
  });

  it("sends callbacks back to this process's port unless a public URL is set", () => {
    expect(loadConfig({ PORT: "3977" }).PUBLIC_URL).toBe("http://127.0.0.1:3977");
    expect(loadConfig({ PORT: "3977", PUBLIC_URL: "https://isp.example" }).PUBLIC_URL).toBe(
      "https://isp.example",
    );
  });

  it("reads the Telegram bot's @username by Telegram's rule, without the @", () => {
    expect(loadConfig({}).TELEGRAM_BOT_USERNAME).toBeUndefined();
    expect(loadConfig({ TELEGRAM_BOT_USERNAME: "TandaoBot" }).TELEGRAM_BOT_USERNAME).toBe("TandaoBot");
    expect(loadConfig({ TELEGRAM_BOT_USERNAME: "@kibera_net_BOT" }).TELEGRAM_BOT_USERNAME).toBe(
      "kibera_net_BOT",
    );
    expect(loadConfig({ TELEGRAM_BOT_USERNAME: "abbot" }).TELEGRAM_BOT_USERNAME).toBe("abbot");
    for (const bad of ["bot", "Tandao", "Tandao-Bot", "Tandao Bot", `${"a".repeat(30)}bot`])
      expect(() => loadConfig({ TELEGRAM_BOT_USERNAME: bad })).toThrow(/TELEGRAM_BOT_USERNAME/);
  });

  it("tells SMS where to pay: the paybill, or with a till the USSD code to dial", () => {
    const sandbox = loadConfig({});
    expect(signingOf({ ...sandbox, MPESA_SHORTCODE: "247247" })).toMatchObject({ paybill: "247247" });
    const till = signingOf({
      ...sandbox,
      MPESA_SHORTCODE: "174379",
      MPESA_TILL: "555111",
      USSD_CODE: "*384*123#",
    });
    expect(till).toMatchObject({ paybill: undefined, till: "555111", ussdCode: "*384*123#" });
    expect(loadConfig({ USSD_CODE: "*384*123#" }).USSD_CODE).toBe("*384*123#");
    for (const bad of ["384*123#", "*384*123", "*384*abc#"])
      expect(() => loadConfig({ USSD_CODE: bad })).toThrow(/USSD_CODE/);
  });

  it("treats an empty value as unset", () => {
    const config = loadConfig({ PORT: "", DATABASE_URL: "" });
    expect(config.PORT).toBe(3000);
    expect(config.DATABASE_URL).toBeUndefined();
  });
});

describe("logs never carry secrets", () => {
  it("redacts passwords, tokens and keys wherever they sit", () => {
    const { lines, logger: probe } = capturingLogger();
    probe.info(
      {
        router: { host: "10.0.0.1", password: "hunter2" },
        apiKey: "atsk_123",
        headers: { authorization: "Bearer zzz" },
      },
      "connect",
    );
    const last = lines.at(-1)!;
    expect(last).toContain("10.0.0.1");
    for (const secret of ["hunter2", "atsk_123", "Bearer zzz"]) expect(last).not.toContain(secret);
  });

  it("leaves out a failed Bot API call's payload and its URL's bot token", () => {
    const { lines, logger: probe } = capturingLogger();
    const token = "7012345678:AAH3x9-kq2Vb_TpQ8sLmN4cYzR6wJdE1fGh";
    // As grammY throws them: Telegram refused setWebhook; Telegram could not be reached.
    const refused = new GrammyError(
      "Call to 'setWebhook' failed!",
      { ok: false, error_code: 400, description: "Bad Request: bad webhook: Failed to resolve host" },
      "setWebhook",
      { url: "https://isp.example/hooks/tg", secret_token: "whsec-super-secret-123" },
    );
    const unreachable = new HttpError(
      "Network request for 'setWebhook' failed!",
      new Error(`request to https://api.telegram.org/bot${token}/setWebhook failed, reason: ECONNRESET`),
    );
    probe.error({ err: refused }, "Telegram webhook could not be set");
    probe.error({ err: unreachable }, "Telegram webhook could not be set");
    const [first, second] = lines;
    expect(first).toContain("bad webhook: Failed to resolve host");
    expect(first).not.toContain("whsec-super-secret-123");
    expect(second).toContain("ECONNRESET");
    expect(second).not.toContain(token.split(":")[1]);
  });

  it("hides the password in a database URL", () => {
    expect(redactUrl("postgres://app:s3cret@db.example:5432/tandao")).not.toContain("s3cret");
  });
});
