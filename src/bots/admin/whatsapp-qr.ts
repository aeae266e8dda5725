import { createHash } from "node:crypto";
import QRCode from "qrcode";
import type { BillingContext } from "../../billing/context.ts";
import { queueAdminPhoto } from "./alert-queue.ts";

/**
 * The WhatsApp Web login QR as a picture in the admin chat, so the ISP's number can be linked from
 * wherever the owner is, not only from the server's terminal. Each QR WhatsApp shows (it changes
 * about every 20 seconds until scanned) goes once.
 */
export async function sendWhatsAppQrToAdmins(
  ctx: BillingContext,
  qr: string,
  chatIds?: readonly number[],
): Promise<number> {
  const png = await QRCode.toBuffer(qr, { type: "png", width: 480, margin: 2 });
  const key = `whatsapp-qr:${createHash("sha256").update(qr).digest("hex").slice(0, 24)}`;
  return ctx.db.transaction((tx) =>
    queueAdminPhoto(
      tx,
      ctx.clock.now(),
      {
        png,
        filename: "whatsapp-login.png",
        caption:
          "WhatsApp Web login: on the ISP's phone open WhatsApp → Linked devices → Link a device, and scan this. A new code follows every 20 seconds until one is scanned.",
      },
      { ...(chatIds ? { chatIds } : {}), key },
    ),
  );
}
