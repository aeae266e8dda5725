import { randomBytes } from "node:crypto";
import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import type { MenuSettings } from "../../menu/types.ts";
import type { Signing } from "../../messaging/render.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "./fake-api.ts";
import { createWhatsAppCloud, type WhatsAppCloud } from "./index.ts";

/**
 * The WhatsApp Cloud API channel with no Meta account: the fake Graph API on 127.0.0.1 and the real
 * channel behind the app's `/hooks/wa`, with a secret made up at start. A newcomer writes as any
 * phone with curl (POST `/sandbox/messages` on the fake, which signs and posts the webhook as Meta
 * would) and reads the answers at `/sandbox/chats/<number>`.
 */
export async function startSandboxWhatsApp(deps: {
  ctx: BillingContext;
  settings: MenuSettings;
  logger: Logger;
  /** The app's own address for the fake's webhook posts, e.g. `http://127.0.0.1:3000`. */
  appUrl: string;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
  servedCountries?: readonly string[];
  /** Where the fake listens on 127.0.0.1 (`WHATSAPP_SANDBOX_PORT`). */
  port?: number;
  /** What notices say of the ISP (`signingOf`). */
  signing?: Signing;
}): Promise<{ fake: FakeWhatsApp; channel: WhatsAppCloud; stop: () => Promise<void> }> {
  const fake = await startFakeWhatsApp(deps.port !== undefined ? { port: deps.port } : {});
  const appSecret = randomBytes(16).toString("hex");
  const channel = createWhatsAppCloud({
    ctx: deps.ctx,
    logger: deps.logger,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings: deps.settings,
    token: fake.token,
    phoneNumberId: fake.phoneNumberId,
    appSecret,
    verifyToken: randomBytes(16).toString("hex"),
    graphUrl: fake.graphUrl,
    ...(deps.servedCountries ? { servedCountries: deps.servedCountries } : {}),
    ...(deps.signing ? { signing: deps.signing } : {}),
  });
  fake.connectWebhook({ url: `${deps.appUrl.replace(/\/+$/, "")}/hooks/wa`, appSecret });
  return {
    fake,
    channel,
    async stop() {
      await channel.stop();
      await fake.close();
    },
  };
}
