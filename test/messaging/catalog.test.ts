import { describe, expect, it } from "vitest";
import type { MessageTemplate } from "../../src/billing/outbox.ts";
import { en } from "../../src/messaging/catalog/en.ts";
import { sw } from "../../src/messaging/catalog/sw.ts";
import { formatDate, placeholders, renderSms, translate } from "../../src/messaging/render.ts";

const templates: MessageTemplate[] = [
  "payment_received",
  "payment_received_plain",
  "payment_failed",
  "payment_not_credited",
  "invoice_reminder",
  "suspended",
  "restored",
  "activated",
  "voucher_code",
  "voucher_not_issued",
  "plan_changed",
  "plan_changed_credit",
  "plan_change_scheduled",
  "plan_change_next_payment",
  "plan_change_dropped",
  "welcome",
  "admin_alert",
];

describe("message catalogs", () => {
  it("have the same keys in English and Kiswahili, none empty", () => {
    const enKeys = Object.keys(en).sort();
    const swKeys = Object.keys(sw).sort();
    expect(swKeys.filter((k) => !(k in en))).toEqual([]);
    expect(enKeys.filter((k) => !(k in sw))).toEqual([]);
    for (const key of enKeys) {
      expect(en[key as keyof typeof en].trim(), key).not.toBe("");
      expect(sw[key as keyof typeof sw].trim(), key).not.toBe("");
    }
  });

  it("use the same placeholders in both languages", () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(placeholders(sw[key]), key).toEqual(placeholders(en[key]));
    }
  });

  it("are actually translated (Kiswahili differs from English except names)", () => {
    const same = (Object.keys(en) as (keyof typeof en)[]).filter((k) => en[k] === sw[k]);
    expect(same.sort()).toEqual(
      [
        "menu.language.choose",
        "menu.language.en",
        "menu.language.sw",
        "menu.main.title",
        "menu.plan.item",
        "menu.voucher.item",
        // The admin's own words, in whatever language they wrote them.
        "sms.broadcast",
      ].sort(),
    );
  });

  it("keep every menu string plain ASCII", () => {
    for (const [key, text] of [...Object.entries(en), ...Object.entries(sw)]) {
      if (key.startsWith("menu.")) expect(/^[\x20-\x7e\n]*$/.test(text), key).toBe(true);
    }
  });

  it("have an SMS text for every outbox template", () => {
    for (const template of templates) {
      expect(`sms.${template}` in en, template).toBe(true);
    }
  });
});

describe("rendering", () => {
  it("formats amounts and dates by parameter name, in the recipient's language", () => {
    const params = { amountCents: 150050, balanceCents: 0, account: "TN0042", receipt: "SAB12CD34" };
    expect(renderSms("en", "payment_received", params, { isp: "Kibera Net" })).toBe(
      "Kibera Net: We received KES 1,500.50 (M-Pesa SAB12CD34) for account TN0042. Balance: KES 0. Thank you.",
    );
    expect(renderSms("sw", "payment_received", params, { isp: "Kibera Net" })).toBe(
      "Kibera Net: Tumepokea KES 1,500.50 (M-Pesa SAB12CD34) kwa akaunti TN0042. Salio: KES 0. Asante.",
    );
    expect(renderSms("sw", "restored", { periodEndAt: "2026-07-31T22:30:00Z" }, { isp: "X" })).toBe(
      "X: Intaneti yako imerudi. Umelipia hadi 1 Ago 2026. Asante.",
    );
    expect(renderSms("en", "no_such_template", {}, { isp: "X" })).toBeNull();
    expect(
      renderSms(
        "en",
        "voucher_code",
        { code: "K7P2QX9A", plan: "1 Hour", validity: "2026-04-01T09:30:00.000Z" },
        { isp: "X" },
      ),
    ).toBe(
      "X: Your 1 Hour voucher code is K7P2QX9A, valid until 1 Apr 2026 12:30. Use it as username and password on the hotspot.",
    );
  });

  it("tells a new subscriber the service is active and how to log in, and masks the password for a log", () => {
    const params = {
      plan: "Home 10",
      periodEndAt: "2026-07-31T22:30:00Z",
      username: "td00042",
      password: "Kq7wX2pLm",
    };
    expect(renderSms("en", "activated", params, { isp: "X" })).toBe(
      "X: Your internet (Home 10) is now active, paid up to 1 Aug 2026. PPPoE username: td00042, password: Kq7wX2pLm",
    );
    expect(renderSms("sw", "activated", params, { isp: "X" })).toBe(
      "X: Intaneti yako (Home 10) sasa inatumika, umelipia hadi 1 Ago 2026. PPPoE jina la mtumiaji: td00042, nenosiri: Kq7wX2pLm",
    );
    for (const language of ["en", "sw"] as const) {
      const masked = renderSms(language, "activated", params, { isp: "X", masked: true })!;
      expect(masked).not.toContain("Kq7wX2pLm");
      expect(masked).toContain("td00042");
      expect(masked).toMatch(/: \*{8}$/);
    }
  });

  it("masks a chat link code for a log, and not a voucher's code, which the admin hands over", () => {
    for (const language of ["en", "sw"] as const) {
      const link = renderSms(language, "chat_link_code", { code: "482913" }, { isp: "X", masked: true })!;
      expect(link).not.toContain("482913");
      expect(link).toContain("********");
    }
    const voucher = { plan: "Hour", code: "HX7K2P", validity: "2026-07-31T22:30:00Z" };
    expect(renderSms("en", "voucher_code", voucher, { isp: "X", masked: true })).toContain("HX7K2P");
  });

  it("says what a plan change cost, or what it credited", () => {
    expect(renderSms("en", "plan_changed", { plan: "Fast 20", chargeCents: 66_600 }, { isp: "X" })).toBe(
      "X: Your plan is now Fast 20. Charged KES 666 for the rest of this period.",
    );
    expect(renderSms("sw", "plan_changed", { plan: "Kasi 20", chargeCents: 66_600 }, { isp: "X" })).toBe(
      "X: Kifurushi chako sasa ni Kasi 20. Umetozwa KES 666 kwa muda uliobaki wa kipindi hiki.",
    );
    expect(renderSms("en", "plan_changed_credit", { plan: "Lite", creditCents: 50_000 }, { isp: "X" })).toBe(
      "X: Your plan is now Lite. KES 500 for the rest of this period is on your balance.",
    );
    expect(renderSms("sw", "plan_changed_credit", { plan: "Lite", creditCents: 50_000 }, { isp: "X" })).toBe(
      "X: Kifurushi chako sasa ni Lite. KES 500 ya muda uliobaki wa kipindi hiki iko kwenye salio lako.",
    );
  });

  it("with a till, which takes no account number, says to dial the menu, or names the till", () => {
    const owed = { amountCents: 150_000, account: "TD00042" };
    const till = { isp: "X", till: "555111", ussdCode: "*384*123#" };
    expect(renderSms("en", "suspended", owed, till)).toBe(
      "X: Your internet is suspended. Pay KES 1,500 by M-Pesa, dial *384*123#, to restore it.",
    );
    expect(renderSms("sw", "welcome", { name: "Amina", account: "TD00042", plan: "Nyumbani" }, till)).toBe(
      "X: Karibu Amina! Akaunti yako ni TD00042, kifurushi Nyumbani. Lipa kwa M-Pesa, piga *384*123#.",
    );
    expect(renderSms("en", "suspended", owed, { isp: "X", till: "555111" })).toBe(
      "X: Your internet is suspended. Pay KES 1,500 by M-Pesa, Buy Goods till 555111, to restore it.",
    );
  });

  it("gives why a prompt was not paid in the reader's language, where M-Pesa's code is known", () => {
    const cancelled = { amountCents: 150_000, reason: "You cancelled the M-Pesa prompt", reasonCode: 1032 };
    expect(renderSms("sw", "payment_failed", cancelled, { isp: "X" })).toBe(
      "X: Malipo yako ya KES 1,500 hayakufaulu (Ulighairi ombi la M-Pesa). Piga menyu ujaribu tena.",
    );
    expect(renderSms("en", "payment_failed", cancelled, { isp: "X" })).toBe(
      "X: Your payment of KES 1,500 did not go through (You cancelled the M-Pesa prompt). Dial the menu to try again.",
    );
    const notPermitted = {
      amountCents: 150_000,
      reason: "M-Pesa did not permit this payment",
      reasonCode: 2028,
    };
    expect(renderSms("sw", "payment_failed", notPermitted, { isp: "X" })).toContain(
      "(M-Pesa haikuruhusu malipo haya)",
    );
  });

  it("names a code the catalogs do not know instead of quoting M-Pesa's English in Kiswahili", () => {
    const unknown = { amountCents: 150_000, reason: "Request cancelled by system", reasonCode: 9999 };
    expect(renderSms("sw", "payment_failed", unknown, { isp: "X" })).toBe(
      "X: Malipo yako ya KES 1,500 hayakufaulu (M-Pesa ilijibu kwa msimbo 9999). Piga menyu ujaribu tena.",
    );
    expect(renderSms("en", "payment_failed", unknown, { isp: "X" })).toContain(
      "(Request cancelled by system)",
    );
  });

  it("says in words when a reminded bill falls due, also for a reminder set after the due date", () => {
    const due = { amountCents: 150_000, account: "TD00042", dueAt: "2026-09-04T00:00:00Z" };
    const signing = { isp: "X", paybill: "400200" };
    expect(renderSms("en", "invoice_reminder", { ...due, days: 3 }, signing)).toBe(
      "X: KES 1,500 for account TD00042 is due in 3 days, 4 Sep 2026. Pay by M-Pesa, paybill 400200, account TD00042.",
    );
    expect(renderSms("en", "invoice_reminder", { ...due, days: 0 }, signing)).toContain(
      "is due today, 4 Sep 2026.",
    );
    expect(renderSms("en", "invoice_reminder", { ...due, days: -2 }, signing)).toContain(
      "was due 2 days ago, 4 Sep 2026.",
    );
    expect(renderSms("sw", "invoice_reminder", { ...due, days: 1 }, signing)).toBe(
      "X: KES 1,500 ya akaunti TD00042 inapaswa kulipwa kesho, tarehe 4 Sep 2026. Lipa kwa M-Pesa, paybill 400200, akaunti TD00042.",
    );
    expect(renderSms("sw", "invoice_reminder", { ...due, days: -1 }, signing)).toContain(
      "ilipaswa kulipwa jana",
    );
  });

  it("says whom to call when a sign-up is turned down", () => {
    const rejected = { account: "TD00042" };
    expect(renderSms("en", "signup_rejected", rejected, { isp: "X", support: "0711 000 111" })).toBe(
      "X: your sign-up (account TD00042) was not approved and nothing is owed. If this is a mistake, call or WhatsApp 0711 000 111.",
    );
    expect(renderSms("sw", "signup_rejected", rejected, { isp: "X", support: "0711 000 111" })).toBe(
      "X: usajili wako (akaunti TD00042) haukukubaliwa na hakuna deni. Kama ni kosa, piga simu au tuma WhatsApp kwa 0711 000 111.",
    );
  });

  it("tells the payer of a rejected sign-up that their money was not credited", () => {
    const held = { amountCents: 100_000, account: "TD00042" };
    expect(renderSms("en", "payment_not_credited", held, { isp: "X", support: "0711 000 111" })).toBe(
      "X: We received KES 1,000 for account TD00042, but its sign-up was not approved, so it was not credited. Please do not pay again: we will refund you. Questions: 0711 000 111.",
    );
    expect(renderSms("sw", "payment_not_credited", held, { isp: "X", support: "0711 000 111" })).toBe(
      "X: Tumepokea KES 1,000 kwa akaunti TD00042, lakini usajili wake haukukubaliwa, kwa hivyo haikuwekwa kwenye akaunti. Tafadhali usilipe tena: tutakurudishia pesa. Maswali: 0711 000 111.",
    );
  });

  it("says where to pay: the paybill and the account to type, or the account alone", () => {
    const owed = { amountCents: 150_000, account: "TD00042" };
    expect(renderSms("en", "suspended", owed, { isp: "X", paybill: "247247" })).toBe(
      "X: Your internet is suspended. Pay KES 1,500 by M-Pesa, paybill 247247, account TD00042, to restore it.",
    );
    expect(renderSms("sw", "suspended", owed, { isp: "X", paybill: "247247" })).toBe(
      "X: Intaneti yako imesimamishwa. Lipa KES 1,500 kwa M-Pesa, paybill 247247, akaunti TD00042, ili irudishwe.",
    );
    expect(renderSms("en", "suspended", owed, { isp: "X" })).toBe(
      "X: Your internet is suspended. Pay KES 1,500 by M-Pesa, account TD00042, to restore it.",
    );
    expect(
      renderSms(
        "sw",
        "welcome",
        { name: "Amina", account: "TD00042", plan: "Nyumbani" },
        { isp: "X", paybill: "247247" },
      ),
    ).toBe(
      "X: Karibu Amina! Akaunti yako ni TD00042, kifurushi Nyumbani. Lipa kwa M-Pesa, paybill 247247, akaunti TD00042.",
    );
  });

  it("shows dates in Nairobi time", () => {
    expect(formatDate("en", new Date("2026-12-31T21:30:00Z"))).toBe("1 Jan 2027");
    expect(formatDate("sw", new Date("2026-03-02T10:00:00Z"))).toBe("2 Mac 2026");
  });

  it("leaves an unknown placeholder visible rather than guessing", () => {
    expect(translate("en", "menu.account.plan", {})).toBe("Plan: {plan}");
  });
});
