import { EventEmitter } from "node:events";
import { join } from "node:path";
import type WAWebJS from "whatsapp-web.js";
import type { WhatsAppWebClient, WhatsAppWebEvents, WhatsAppWebMessage } from "./client.ts";

/**
 * whatsapp-web.js behind Tandao's interface. The library (and puppeteer with it) is imported only
 * when the channel starts, so an app without WhatsApp Web never loads it.
 */

export interface RealClientOptions {
  /** The app's data folder: the login (LocalAuth) is kept in `whatsapp-web/` inside it. */
  dataDir: string;
  /** The system's Chromium (Debian: /usr/bin/chromium); puppeteer's own download is never used. */
  chromiumPath: string;
}

export const authFolder = (dataDir: string) => join(dataDir, "whatsapp-web");

/** Launch flags for a server: no sandbox as root, no /dev/shm (small in containers), no GPU. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-setuid-sandbox",
  "--disable-dev-shm-usage",
  "--disable-gpu",
];

function wrapMessage(client: WAWebJS.Client, message: WAWebJS.Message): WhatsAppWebMessage {
  return {
    id: message.id._serialized,
    from: message.from,
    body: message.body,
    type: message.type,
    fromMe: message.fromMe,
    isStatus: message.isStatus,
    async contactNumber() {
      // A hidden (`@lid`) sender: WhatsApp Web knows the phone behind the id when it may be shown.
      if (message.from.endsWith("@lid")) {
        const pairs = await client.getContactLidAndPhone([message.from]).catch(() => []);
        const phone = pairs[0]?.pn?.split("@")[0];
        if (phone) return phone;
      }
      const { number } = await message.getContact();
      // For a hidden contact `number` can be the id's own digits, which are no phone number.
      return number && !message.from.startsWith(`${number}@`) ? number : null;
    },
  };
}

class RealClient extends EventEmitter<WhatsAppWebEvents> implements WhatsAppWebClient {
  constructor(private readonly client: WAWebJS.Client) {
    super();
    client.on("qr", (qr: string) => this.emit("qr", qr));
    client.on("code", (code: string) => this.emit("code", code));
    client.on("authenticated", () => this.emit("authenticated"));
    client.on("auth_failure", (message: string) => this.emit("auth_failure", String(message)));
    client.on("ready", () => this.emit("ready"));
    client.on("message", (message: WAWebJS.Message) => this.emit("message", wrapMessage(client, message)));
    client.on("disconnected", (reason: unknown) => this.emit("disconnected", String(reason)));
  }

  initialize(): Promise<void> {
    return this.client.initialize();
  }

  destroy(): Promise<void> {
    return this.client.destroy();
  }

  async sendMessage(chatId: string, text: string): Promise<{ id: string }> {
    // A link in a menu must not turn into a preview card (one more request, and a slower send).
    const sent = await this.client.sendMessage(chatId, text, { linkPreview: false });
    return { id: sent.id._serialized };
  }

  async getNumberId(digits: string): Promise<string | null> {
    const id = await this.client.getNumberId(digits);
    return id?._serialized ?? null;
  }

  requestPairingCode(digits: string): Promise<string> {
    return this.client.requestPairingCode(digits);
  }
}

export async function createRealClient(options: RealClientOptions): Promise<WhatsAppWebClient> {
  const { Client, LocalAuth } = (await import("whatsapp-web.js")).default;
  const client = new Client({
    authStrategy: new LocalAuth({ dataPath: authFolder(options.dataDir) }),
    puppeteer: { executablePath: options.chromiumPath, headless: true, args: CHROMIUM_ARGS },
  });
  return new RealClient(client);
}
