import { postJson, receiptNumber } from "./fake-support.ts";
import { darajaTimestamp } from "./wire.ts";

/** The C2B side of the Daraja fake (fake.ts): a customer paying the paybill or till from their phone. */

export interface C2bPayment {
  billRef: string;
  amountShillings: number | string;
  transId?: string;
  firstName?: string;
}

/** What the merchant's URLs answered (no confirmation when the validation refused the payment). */
export interface C2bAnswers {
  validation?: unknown;
  confirmation?: unknown;
  transId: string;
}

/** Posts the payment as Daraja does: to validation when `validate`, then, if accepted, to confirmation. */
export async function postC2bPayment(
  urls: { confirmation: string; validation: string },
  shortcode: string,
  validate: boolean,
  input: C2bPayment,
): Promise<C2bAnswers> {
  const transId = input.transId ?? receiptNumber();
  const body = {
    TransactionType: "Pay Bill",
    TransID: transId,
    TransTime: darajaTimestamp(new Date()),
    TransAmount:
      typeof input.amountShillings === "number" ? input.amountShillings.toFixed(2) : input.amountShillings,
    BusinessShortCode: shortcode,
    BillRefNumber: input.billRef,
    InvoiceNumber: "",
    OrgAccountBalance: "0.00",
    ThirdPartyTransID: "",
    MSISDN: "2547 ***** 126",
    FirstName: input.firstName ?? "JOHN",
    MiddleName: "",
    LastName: "",
  };
  let validation: unknown;
  if (validate) {
    validation = await postJson(urls.validation, body);
    if ((validation as { ResultCode?: unknown } | null)?.ResultCode !== "0") return { validation, transId };
  }
  const confirmation = await postJson(urls.confirmation, body);
  return { validation, confirmation, transId };
}
