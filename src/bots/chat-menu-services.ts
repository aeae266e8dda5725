import type { MenuServices } from "../menu/types.ts";

/** The menu's services as the chat menu gives them to the screens. */

/** Refused to a chat without a phone: an STK push needs one, and "" must never reach M-Pesa. */
const PHONE_REQUIRED = "phone_required";

/** A visitor who answers a payment prompt before sharing a number gets a refusal, not a push to "". */
export function requirePhone(services: MenuServices): MenuServices {
  return {
    ...services,
    requestPayment: (user, session, request) =>
      user.phone === "" && request.payerPhone === undefined
        ? Promise.resolve({ ok: false, reason: PHONE_REQUIRED, message: "a phone number is needed to pay" })
        : services.requestPayment(user, session, request),
  };
}

/** Thrown when answering a message not stored yet would act or write: it is stored first. */
class MustStore extends Error {
  constructor() {
    super("this message must be stored before it is answered");
  }
}

/** One, made once: the first step of an action in a known chat throws it, and a stack costs time. */
export const MUST_STORE = new MustStore();

const mustStore = (): never => {
  throw MUST_STORE;
};

/** The services that only read; the others throw `MustStore`. */
export function readOnly(services: MenuServices): MenuServices {
  return {
    ...services,
    requestPayment: mustStore,
    changePlan: mustStore,
    setLanguage: mustStore,
    signUp: mustStore,
    claimEffect: mustStore,
    recordEffect: mustStore,
    ...(services.bindPlans ? { bindPlans: mustStore } : {}),
  };
}
