import type {
  AccountView,
  MenuServices,
  MenuSettings,
  Outcome,
  PlanView,
  QuoteView,
  Refusal,
  SignUpResult,
  VoucherView,
} from "../../src/menu/types.ts";

/** The menu's use-cases in memory, for layout tests: records every action instead of doing it. */
export interface FakeWorld {
  account?: AccountView;
  plans: PlanView[];
  quote?: (planId: number) => QuoteView | Refusal;
  refusePayment?: Refusal;
  /** What a sign-up answers; default: a new account with a large amount due. */
  signUp?: SignUpResult;
  /** Voucher codes bought, by the phone that paid for them. */
  vouchers?: Record<string, VoucherView[]>;
}

export interface FakeServices extends MenuServices {
  actions: string[];
}

export function fakeServices(world: FakeWorld): FakeServices {
  const effects = new Map<string, Outcome | "pending">();
  const actions: string[] = [];
  const quote = (planId: number): QuoteView | Refusal =>
    world.quote?.(planId) ?? { ok: false, reason: "unknown_plan", message: "no quote" };
  return {
    actions,
    async account() {
      if (!world.account) throw new Error("no account in this world");
      return world.account;
    },
    async plans(kind) {
      return world.plans.filter((p) => p.kind === kind);
    },
    async quotePlanChange(_subscriptionId, planId) {
      return quote(planId);
    },
    async vouchersBought(phone) {
      return world.vouchers?.[phone] ?? [];
    },
    async requestPayment(_user, _session, request) {
      actions.push(
        `pay:${request.purpose}:${request.amountCents}:${request.planId ?? ""}:${request.idempotencyKey ?? ""}`,
      );
      return world.refusePayment ?? { ok: true, intentId: actions.length };
    },
    async changePlan(_user, _session, _subscriptionId, planId) {
      actions.push(`change:${planId}`);
      return quote(planId);
    },
    async setLanguage(_user, _session, language) {
      actions.push(`language:${language}`);
    },
    async signUp(_user, _session, request) {
      actions.push(`signup:${request.planId}:${request.area.name}:${request.name}`);
      return world.signUp ?? { ok: true, accountNumber: "NYA-0000123456", amountDueCents: 9_999_999_00 };
    },
    async claimEffect(session, _user, step) {
      const key = `${session.id}:${step}`;
      const found = effects.get(key);
      if (found) return found;
      effects.set(key, "pending");
      return "claimed";
    },
    async recordedOutcome(session, step) {
      return effects.get(`${session.id}:${step}`);
    },
    async recordEffect(session, step, outcome) {
      effects.set(`${session.id}:${step}`, outcome);
    },
  };
}

export const longSettings: MenuSettings = {
  isp: "Nyahururu Community Wireless Broadband Cooperative",
  support: "+254 712 345 678 ext",
  timezone: "Africa/Nairobi",
  minPayCents: 1_000,
  maxPayCents: 150_000_00,
  signupAreas: [
    { name: "Kahawa West Sukari Estate Phase Two", routerId: 1 },
    ...Array.from({ length: 11 }, (_, i) => ({
      name: `Roysambu Zimmerman Githurai ${i + 45}`,
      routerId: null,
    })),
  ],
  adminPhone: "+254700000001",
};
