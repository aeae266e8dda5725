import { callingCodeOf, DEFAULT_SERVED_COUNTRIES } from "../lib/phone.ts";
import { type Language, translate } from "../messaging/render.ts";
import { ISP_NAME_MAX, SCREEN_BUDGET, shortName, toAscii } from "./engine.ts";
import type { MenuSettings, MenuView } from "./types.ts";

const regionNames = new Map<Language, Intl.DisplayNames>();

/** A country's name in `language` (Node's ICU knows Kiswahili names), or null when unknown. */
function countryName(country: string, language: Language): string | null {
  let names = regionNames.get(language);
  if (!names) {
    names = new Intl.DisplayNames([language], { type: "region", fallback: "none" });
    regionNames.set(language, names);
  }
  try {
    return names.of(country) ?? null;
  } catch {
    return null;
  }
}

/**
 * What a number from a country that is not served sees: the ISP does not serve it, in English and
 * Kiswahili (nothing tells which the caller reads), or in English alone when both do not fit.
 */
export function notServedView(settings: MenuSettings, country: string | null): MenuView {
  const isp = shortName(settings.isp, ISP_NAME_MAX);
  const line = (language: Language) => {
    const name = country ? countryName(country, language) : null;
    return toAscii(
      name
        ? translate(language, "menu.foreign.country", { isp, country: shortName(name, 40) })
        : translate(language, "menu.foreign.other", { isp }),
    );
  };
  const both = [line("en"), line("sw")];
  const fits = both.join("\n").length <= SCREEN_BUDGET;
  return { end: true, lines: fits ? both : [line("en")], screen: "notServed" };
}

/**
 * The countries whose numbers are served, as a person reads them in `language`: "Kenya (+254)",
 * several as "Kenya (+254) or Uganda (+256)".
 */
export function servedCountriesText(settings: MenuSettings, language: Language): string {
  const served = settings.servedCountries ?? DEFAULT_SERVED_COUNTRIES;
  const named = served.map((code) => {
    const name = countryName(code, language) ?? code;
    const callingCode = callingCodeOf(code);
    return callingCode ? `${name} (${callingCode})` : name;
  });
  return new Intl.ListFormat(language, { type: "disjunction" }).format(named);
}
