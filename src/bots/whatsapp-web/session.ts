import qrcode from "qrcode-terminal";
import type { Logger } from "../../logger.ts";
import {
  systemTimers,
  type Timers,
  type WhatsAppWebClient,
  type WhatsAppWebClientFactory,
  type WhatsAppWebMessage,
} from "./client.ts";

/**
 * Keeps one WhatsApp Web login alive: starts a client, shows the login (a QR in the terminal and to
 * `onQr`, or a pairing code), and after a disconnect or a failed start makes a new client after a
 * growing pause (a browser that keeps crashing, or WhatsApp refusing, must not be hammered).
 */

export type WhatsAppWebStatus =
  /** The first client is starting. */
  | "starting"
  /** Waiting for the login: a QR to scan or a pairing code to type. */
  | "qr"
  | "ready"
  /** Between a disconnect (or failed start) and the next client being up. */
  | "reconnecting"
  | "stopped";

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 5_000, maxMs: 5 * 60_000 };

export interface SessionOptions {
  createClient: WhatsAppWebClientFactory;
  logger: Logger;
  onMessage: (message: WhatsAppWebMessage) => void;
  /** Link with a pairing code for this number (international digits) instead of a QR. */
  pairingPhone?: string;
  /** A new login QR (the admin chat sends it as an image). */
  onQr?: (qr: string) => void | Promise<void>;
  /** A new pairing code. */
  onPairingCode?: (code: string) => void | Promise<void>;
  /** Shows a QR to whoever watches the terminal (default: a small one on stdout). */
  printQr?: (qr: string) => void;
  timers?: Timers;
  backoff?: Partial<Backoff>;
}

export function printQrToTerminal(qr: string): void {
  qrcode.generate(qr, { small: true }, (art) => process.stdout.write(`${art}\n`));
}

export class WhatsAppWebSession {
  private state: WhatsAppWebStatus = "starting";
  private client: WhatsAppWebClient | null = null;
  /** Bumped for each client: events of a client given up on are ignored. */
  private generation = 0;
  private failures = 0;
  private timer: unknown = null;
  private readonly timers: Timers;
  private readonly backoff: Backoff;

  constructor(private readonly options: SessionOptions) {
    this.timers = options.timers ?? systemTimers;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
  }

  status(): WhatsAppWebStatus {
    return this.state;
  }

  readyClient(): WhatsAppWebClient | null {
    return this.state === "ready" ? this.client : null;
  }

  /** Starts the first client; resolves once its `initialize` returned or failed (then retries). */
  start(): Promise<void> {
    return this.connect();
  }

  async stop(): Promise<void> {
    this.state = "stopped";
    this.generation++;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    if (client) await this.destroy(client);
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    let client: WhatsAppWebClient | null = null;
    try {
      client = await this.options.createClient();
      if (generation !== this.generation) {
        await this.destroy(client);
        return;
      }
      this.client = client;
      this.listen(client, generation);
      await client.initialize();
    } catch (error) {
      if (generation !== this.generation) return;
      this.options.logger.error({ err: error }, "whatsapp web failed to start");
      this.retry(generation, client);
    }
  }

  private listen(client: WhatsAppWebClient, generation: number): void {
    const { logger } = this.options;
    const current = () => generation === this.generation;
    let pairingAsked = false;
    let lastCode: string | null = null;
    const showCode = (code: string) => {
      if (!current() || code === lastCode) return;
      lastCode = code;
      logger.warn(
        { pairingCode: code },
        "whatsapp web: enter this pairing code on the phone (Linked devices)",
      );
      this.hook(() => this.options.onPairingCode?.(code), "pairing code hook failed");
    };
    client.on("qr", (qr) => {
      if (!current()) return;
      this.state = "qr";
      const phone = this.options.pairingPhone;
      if (phone) {
        // WhatsApp keeps offering QRs while it waits; one pairing request per client is enough
        // (the library then emits a fresh `code` when the old one expires).
        if (pairingAsked) return;
        pairingAsked = true;
        client.requestPairingCode(phone).then(showCode, (error: unknown) => {
          if (current()) logger.error({ err: error }, "whatsapp web: pairing code request failed");
        });
        return;
      }
      (this.options.printQr ?? printQrToTerminal)(qr);
      logger.warn("whatsapp web: scan the QR above with the ISP's phone (Linked devices)");
      this.hook(() => this.options.onQr?.(qr), "QR hook failed");
    });
    client.on("code", showCode);
    client.on("authenticated", () => {
      if (current()) logger.info("whatsapp web authenticated");
    });
    client.on("auth_failure", (message) => {
      if (current()) logger.error({ reason: message }, "whatsapp web: the stored login was refused");
    });
    client.on("ready", () => {
      if (!current()) return;
      this.state = "ready";
      this.failures = 0;
      logger.info("whatsapp web ready");
    });
    client.on("message", (message) => {
      if (!current()) return;
      try {
        this.options.onMessage(message);
      } catch (error) {
        logger.error({ err: error }, "whatsapp web message not taken");
      }
    });
    client.on("disconnected", (reason) => {
      if (!current()) return;
      logger.warn({ reason }, "whatsapp web disconnected");
      this.retry(generation, client);
    });
  }

  /** Gives up on this client and makes a new one after the next pause of the back-off. */
  private retry(generation: number, client: WhatsAppWebClient | null): void {
    if (generation !== this.generation || this.state === "stopped") return;
    this.generation++;
    this.client = null;
    this.state = "reconnecting";
    if (client) void this.destroy(client);
    const delayMs = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.failures);
    this.failures++;
    this.options.logger.warn({ delayMs }, "whatsapp web reconnecting");
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delayMs);
  }

  /** whatsapp-web.js destroys a client itself on some disconnects: a second close may throw. */
  private async destroy(client: WhatsAppWebClient): Promise<void> {
    try {
      await client.destroy();
    } catch (error) {
      this.options.logger.debug({ err: error }, "whatsapp web client already closed");
    }
  }

  /** A hook's failure is logged: it must never stop the login or the process. */
  private hook(run: () => void | Promise<void> | undefined, message: string): void {
    try {
      void Promise.resolve(run()).catch((error: unknown) =>
        this.options.logger.error({ err: error }, message),
      );
    } catch (error) {
      this.options.logger.error({ err: error }, message);
    }
  }
}
