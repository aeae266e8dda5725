import { planNameIn } from "../billing/accounts.ts";
import { RECENT_VOUCHER_DAYS } from "../billing/vouchers-bought.ts";
import { displayPhone } from "../lib/phone.ts";
import { type MenuContext, type Screen, shortName } from "./engine.ts";
import { end, push } from "./screen-kit.ts";
import type { VoucherView } from "./types.ts";

/**
 * "My voucher codes": the codes bought with the user's own phone shown again, for a buyer whose
 * SMS was lost or deleted. Only on screen: nothing is sent or recorded, and the phone is the one the
 * channel vouches for (USSD's caller, WhatsApp's sender, a Telegram chat's linked or shared number).
 */

// Kept for the session: the list's numbers keep meaning the same codes however long the person reads.
const bought = (ctx: MenuContext) =>
  ctx.memo(`session:vouchers:${ctx.user.phone}`, () => ctx.services.vouchersBought(ctx.user.phone));

const planOf = (ctx: MenuContext, voucher: VoucherView) => shortName(planNameIn(voucher.plan, ctx.language));

// An instant under a name not ending in `At` is shown with its time of day: an hour's voucher needs it.
const validity = (voucher: VoucherView) => voucher.expiresAt.toISOString();

const noneLine = (ctx: MenuContext) =>
  ctx.t("menu.voucher.mineNone", { phone: displayPhone(ctx.user.phone), lookbackDays: RECENT_VOUCHER_DAYS });

export const myVouchers: Screen = {
  async body(ctx) {
    // A chat visitor who shared no number: the chat asks for it (chat-menu's `needsPhone`).
    if (ctx.user.phone === "") return { lines: [ctx.t("menu.voucher.minePhone")] };
    const vouchers = await bought(ctx);
    if (vouchers.length === 0) return { lines: [noneLine(ctx)] };
    return {
      lines: [ctx.t("menu.voucher.mineTitle")],
      list: vouchers.map((v) =>
        ctx.t("menu.voucher.mineItem", { code: v.code, plan: planOf(ctx, v), validity: validity(v) }),
      ),
    };
  },
  async choose(ctx, _frame, choice) {
    const chosen = choice.kind === "item" ? (await bought(ctx))[choice.index] : undefined;
    if (!chosen) return { kind: "hint", hint: { key: "menu.hint.invalid" } };
    return push("myVoucher", { code: chosen.code });
  },
};

/** One code with how to use it: in a chat, the list's codes are buttons, and this is text to copy. */
export const myVoucher: Screen = {
  async body(ctx, frame) {
    const voucher = (await bought(ctx)).find((v) => v.code === frame.params.code);
    if (!voucher) return end([noneLine(ctx)]);
    return {
      lines: [
        ctx.t("menu.voucher.code", { code: voucher.code }),
        ctx.t("menu.voucher.codeValid", { plan: planOf(ctx, voucher), validity: validity(voucher) }),
        ctx.t("menu.voucher.codeUse"),
      ],
    };
  },
};
