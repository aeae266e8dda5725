import { EventEmitter } from "node:events";
import type { WhatsAppWebClient, WhatsAppWebEvents, WhatsAppWebMessage } from "./client.ts";

/**
 * A WhatsApp Web client without a browser: tests (and a simulator) emit what WhatsApp would (a QR,
 * ready, a message, a disconnect), and read what the channel sent. Sends can be made to fail, and a
 * number can be made "not on WhatsApp".
 */

export interface FakeSent {
  chatId: string;
  text: string;
  id: string;
}

let sequence = 0;

/** An inbound message as whatsapp-web.js would give it; `number` is the contact's, for `@lid`. */
export function fakeMessage(
  fields: Partial<Omit<WhatsAppWebMessage, "contactNumber">> & {
    from: string;
    number?: string | null;
    /** The contact lookup fails this many times first (the page reloading). */
    lookupFailures?: number;
  },
): WhatsAppWebMessage {
  const { number, lookupFailures, ...rest } = fields;
  let failuresLeft = lookupFailures ?? 0;
  const id = rest.id ?? `false_${fields.from}_FAKE${++sequence}`;
  return {
    body: "",
    type: "chat",
    fromMe: false,
    isStatus: false,
    ...rest,
    id,
    contactNumber: async () => {
      if (failuresLeft > 0) {
        failuresLeft--;
        throw new Error("Evaluation failed: the page was reloaded");
      }
      return number !== undefined
        ? number
        : fields.from.endsWith("@c.us")
          ? fields.from.split("@")[0]!
          : null;
    },
  };
}

export class FakeWhatsAppWebClient extends EventEmitter<WhatsAppWebEvents> implements WhatsAppWebClient {
  readonly sent: FakeSent[] = [];
  readonly pairingRequests: string[] = [];
  initializeCalls = 0;
  destroyed = false;
  /** The next `initialize` calls that fail (a browser that cannot start). */
  failInitialize = 0;
  /** What `requestPairingCode` answers. */
  pairingCode = "ABCD1234";
  private failSends: Error[] = [];
  private readonly notOnWhatsApp = new Set<string>();

  async initialize(): Promise<void> {
    this.initializeCalls++;
    if (this.failInitialize > 0) {
      this.failInitialize--;
      throw new Error("Failed to launch the browser process!");
    }
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
  }

  async sendMessage(chatId: string, text: string): Promise<{ id: string }> {
    const failure = this.failSends.shift();
    if (failure) throw failure;
    const id = `true_${chatId}_SENT${++sequence}`;
    this.sent.push({ chatId, text, id });
    return { id };
  }

  async getNumberId(digits: string): Promise<string | null> {
    return this.notOnWhatsApp.has(digits) ? null : `${digits}@c.us`;
  }

  async requestPairingCode(digits: string): Promise<string> {
    this.pairingRequests.push(digits);
    return this.pairingCode;
  }

  // Driving the fake, as WhatsApp would.

  showQr(qr = `2@fake-qr-${++sequence}`): void {
    this.emit("qr", qr);
  }

  /** Login done: `authenticated` then `ready`, as a scanned QR or a restored session gives. */
  login(): void {
    this.emit("authenticated");
    this.emit("ready");
  }

  disconnect(reason = "NAVIGATION"): void {
    this.emit("disconnected", reason);
  }

  receive(message: WhatsAppWebMessage): void {
    this.emit("message", message);
  }

  /** The next sends fail with these errors (default: a browser that went away). */
  failNextSends(count = 1, error: () => Error = () => new Error("Protocol error: Session closed.")): void {
    for (let i = 0; i < count; i++) this.failSends.push(error());
  }

  /** This number answers `getNumberId` with null, as a number without WhatsApp does. */
  refuse(digits: string): void {
    this.notOnWhatsApp.add(digits);
  }

  sentTo(digits: string): FakeSent[] {
    return this.sent.filter((m) => m.chatId === `${digits}@c.us`);
  }
}
