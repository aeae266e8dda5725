import type { SignupArea } from "../config.ts";
import type { IntentPurpose, PlanKind, SubscriptionStatus } from "../db/schema/index.ts";
import type { Language, MessageKey, Params } from "../messaging/render.ts";

export type { Language, SignupArea };

/** Who is dialling: a phone number, and the customer behind it when there is one. */
export interface MenuUser {
  /** E.164. */
  phone: string;
  language: Language;
  customer: { id: number; accountNumber: string; name: string } | null;
  /**
   * The channel itself tells the phone and no other can be given in it (WhatsApp: the sender's own
   * number). An empty `phone` is then a number the ISP does not serve, not one still to be shared.
   */
  phoneFromChannel?: boolean;
  /**
   * With `phoneFromChannel`: the channel knows the person but not their number (a WhatsApp username
   * without a number), so an empty `phone` says nothing of their country.
   */
  phoneHidden?: boolean;
}

/** The conversation the inputs belong to (a USSD session, later a chat). */
export interface MenuSession {
  /** `channel_sessions.id`, e.g. `ussd:ATUid_…`; also the payment intent's `channelSessionId`. */
  id: string;
  channel: string;
  /**
   * The plan lists this session was first shown, by kind, as stored with it. When set, a
   * list the session has not been shown yet is stored on first sight (`bindPlans`), so that the
   * replayed numbers keep naming the plans and prices the subscriber saw. Unset: lists are read afresh.
   */
  plans?: ShownPlans;
}

export type ShownPlans = Partial<Record<PlanKind, PlanView[]>>;

export interface PlanView {
  id: number;
  name: string;
  /** The name in Kiswahili, shown on Kiswahili screens when set. */
  nameSw: string | null;
  kind: PlanKind;
  priceCents: number;
  periodUnit: "months" | "days" | "hours";
  periodCount: number;
  /** Data allowance per period; null: no cap. */
  dataCapBytes: number | null;
}

export interface AccountView {
  accountNumber: string;
  subscriptionId: number | null;
  status: SubscriptionStatus | null;
  plan: PlanView | null;
  /** When the paid service ends; null until the first payment. */
  periodEnd: Date | null;
  /** The paid period is over (a suspended account): the screen says "expired", not "expires". */
  periodEnded: boolean;
  balanceCents: number;
  amountDueCents: number;
  lastPayment: { amountCents: number; receivedAt: Date } | null;
  /** The account's sign-up was rejected: money paid to it is not credited (closed-accounts.ts). */
  closed?: boolean;
}

export interface QuoteView {
  kind: "upgrade" | "downgrade" | "keep" | "same";
  chargeCents: number;
  creditCents: number;
  /** What must still be paid by M-Pesa after the subscriber's credit. */
  payableCents: number;
  effectiveAt: Date;
  immediate: boolean;
  /** Scheduled in the grace days: it comes with the next period's payment, on no date. */
  withNextPayment: boolean;
  toPlan: PlanView;
}

/** A voucher code bought with the user's phone, as the "my voucher codes" screen shows it. */
export interface VoucherView {
  code: string;
  plan: Pick<PlanView, "name" | "nameSw">;
  expiresAt: Date;
}

/** A refusal a use-case explains to the person (billing rule, limit): shown, never a crash. */
export type Refusal = { ok: false; reason: string; message: string };

/** A newcomer's sign-up, as the confirmation screen showed it. */
export interface SignUpRequest {
  name: string;
  planId: number;
  area: SignupArea;
  language: Language;
  /** Told of the sign-up by an `admin_alert` SMS (`ADMIN_PHONE`); unset: nobody is. */
  adminPhone?: string;
}

export type SignUpResult =
  | { ok: true; accountNumber: string; amountDueCents: number }
  /** The phone already has an account: the person is told its number rather than given a second one. */
  | { ok: false; reason: "exists"; accountNumber: string }
  | Refusal;

/** What a confirmed action led to. Stored per session and step, so a replayed request shows it again. */
export type Outcome =
  | { next: "end"; key: MessageKey; params: Record<string, string | number> }
  | { next: "home"; notice: MessageKey };

/**
 * Everything the menu reads or changes, as core use-cases. The menu holds no SQL and no channel code;
 * `createMenuServices` binds this to the billing core and the database.
 */
export interface MenuServices {
  account(customerId: number): Promise<AccountView>;
  /** Active plans of a kind, cheapest first. */
  plans(kind: PlanKind): Promise<PlanView[]>;
  quotePlanChange(subscriptionId: number, planId: number): Promise<QuoteView | Refusal>;
  /**
   * The voucher codes `phone` paid for recently that can still be used, newest first (a handful at
   * most). `phone` is one the channel vouches for: never a number the person typed.
   */
  vouchersBought(phone: string): Promise<VoucherView[]>;
  requestPayment(
    user: MenuUser,
    session: MenuSession,
    request: {
      purpose: IntentPurpose;
      amountCents: number;
      planId?: number;
      subscriptionId?: number;
      /** A repeat under the same key records nothing new and gets the first answer. */
      idempotencyKey?: string;
      /** The M-Pesa number prompted, when not the user's own (a line without M-Pesa, a relative paying). */
      payerPhone?: string;
    },
  ): Promise<{ ok: true; intentId: number } | Refusal>;
  changePlan(
    user: MenuUser,
    session: MenuSession,
    subscriptionId: number,
    planId: number,
  ): Promise<QuoteView | Refusal>;
  /** A repeat under `idempotencyKey` changes nothing (a late copy cannot undo a newer choice). */
  setLanguage(
    user: MenuUser,
    session: MenuSession,
    language: Language,
    idempotencyKey?: string,
  ): Promise<void>;
  /**
   * Creates a pending customer and subscription for the dialling phone (the first payment starts
   * the service). Refuses a phone that already has an account.
   */
  signUp(user: MenuUser, session: MenuSession, request: SignUpRequest): Promise<SignUpResult>;
  /**
   * Claims the right to run the confirmed action at `step` of `session` exactly once. Returns
   * `claimed` the first time; afterwards the stored outcome, or `pending` while it is still running.
   */
  claimEffect(session: MenuSession, user: MenuUser, step: number): Promise<"claimed" | "pending" | Outcome>;
  recordEffect(session: MenuSession, step: number, outcome: Outcome): Promise<void>;
  /** The stored outcome of `step`, read afresh (when the copy loaded with the user may be old). */
  recordedOutcome(session: MenuSession, step: number): Promise<Outcome | "pending" | undefined>;
  /**
   * Stores `shown` as the session's list of `kind` unless it already has one, and returns the one
   * it keeps: another instance may have stored a different list first.
   */
  bindPlans?(session: MenuSession, user: MenuUser, kind: PlanKind, shown: PlanView[]): Promise<PlanView[]>;
}

export interface MenuSettings {
  isp: string;
  /** The support phone number as people should dial it; screens show at most 20 characters of it. */
  support: string;
  timezone: string;
  /** Bounds for "pay another amount". */
  minPayCents: number;
  maxPayCents: number;
  /** ISO country codes whose numbers may use the menu (`SERVED_COUNTRIES`); default Kenya only. */
  servedCountries?: readonly string[];
  /** Where a newcomer may sign up (`SIGNUP_AREAS`); empty or unset: the menu only says how to sign up. */
  signupAreas?: readonly SignupArea[];
  /** Receives an `admin_alert` SMS for every self sign-up (`ADMIN_PHONE`). */
  adminPhone?: string;
}

/** What a channel shows: `end` closes the conversation (USSD `END`). Lines are already translated. */
export interface MenuView {
  end: boolean;
  lines: string[];
  /** The screen that produced it, for tests and logs. */
  screen: string;
  /**
   * The same screen split for channels that show choices as buttons (chat): `head` is `lines` without
   * the numbered choices, `choices` what may be answered (`key` is what USSD would type). Absent on
   * views without choices (an outcome, a refusal): then `lines` is all there is.
   */
  head?: string[];
  choices?: MenuChoice[];
}

/** One numbered answer on a screen: an option, a list item, or navigation (`98` more, `0` back, `00` home). */
export interface MenuChoice {
  key: string;
  label: string;
}

export interface MenuHint {
  key: MessageKey;
  params?: Params;
}
