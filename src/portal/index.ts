export { contrast, parseHex, themeFrom, themePairs } from "./colours.ts";
export { safeLoginUrl } from "./hotspot.ts";
export { hotspotLoginHtml } from "./login-html.ts";
export { createPortalRoutes, type PortalDeps } from "./routes.ts";
export { portalTokenKey } from "./token-key.ts";
export { ensureWalledGarden, WALLED_GARDEN_MARKER, walledGardenEntries } from "./walled-garden.ts";
