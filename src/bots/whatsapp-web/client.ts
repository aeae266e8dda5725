/**
 * The part of WhatsApp Web that Tandao uses, as an interface Tandao owns. The real implementation
 * (real-client.ts) drives whatsapp-web.js in a headless Chromium; the fake (fake-client.ts) lets
 * every test, and anything else that must run without a phone, use the channel as it is.
 */

/** One inbound message, reduced to what the channel reads. */
export interface WhatsAppWebMessage {
  /** The platform's id of the message, unique per chat and direction (used to handle it once). */
  id: string;
  /**
   * The chat it came from: `<digits>@c.us` for a person, `<id>@lid` when WhatsApp hides the number,
   * `<id>@g.us` for a group, `status@broadcast` for a status update.
   */
  from: string;
  body: string;
  /** whatsapp-web.js's type: `chat` for text; `image`, `ptt`, `sticker`, … for the rest. */
  type: string;
  fromMe: boolean;
  /** A status update (the stories feed), never a message to the ISP. */
  isStatus: boolean;
  /** The sender's phone number in international digits, looked up from the contact (`@lid` senders). */
  contactNumber(): Promise<string | null>;
}

/** Events and their arguments, as whatsapp-web.js names them. */
export interface WhatsAppWebEvents {
  /** A login QR to scan (refreshed every ~20 s until scanned). */
  qr: [qr: string];
  /** A pairing code to type on the phone instead of scanning (refreshed every few minutes). */
  code: [code: string];
  authenticated: [];
  /** A stored session could not be restored. */
  auth_failure: [message: string];
  ready: [];
  message: [message: WhatsAppWebMessage];
  /** The session ended (`LOGOUT`, `CONFLICT`, `UNPAIRED`, …); this client is finished. */
  disconnected: [reason: string];
}

export interface WhatsAppWebClient {
  on<E extends keyof WhatsAppWebEvents>(event: E, listener: (...args: WhatsAppWebEvents[E]) => void): unknown;
  /** Starts the browser and WhatsApp Web; login (QR or pairing code) and `ready` follow as events. */
  initialize(): Promise<void>;
  /** Closes the browser. The client cannot be started again: a reconnect makes a new one. */
  destroy(): Promise<void>;
  /** Sends a text to a chat id as `getNumberId` returned it; resolves with the message's id. */
  sendMessage(chatId: string, text: string): Promise<{ id: string }>;
  /** The chat id of a phone number (international digits), or null when it is not on WhatsApp. */
  getNumberId(digits: string): Promise<string | null>;
  /** Asks for an 8-character code to link the phone `digits` without scanning a QR. */
  requestPairingCode(digits: string): Promise<string>;
}

export type WhatsAppWebClientFactory = () => WhatsAppWebClient | Promise<WhatsAppWebClient>;

/** Timers, injected so that reconnecting and pacing are tested without waiting. */
export interface Timers {
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimers: Timers = {
  setTimeout(run, ms) {
    const handle = setTimeout(run, ms);
    // A pending reconnect must not keep a stopping process alive.
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
