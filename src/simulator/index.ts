export { mountSimulator, type SandboxParts } from "./mount.ts";
export { createSimulatorRoutes, type SimulatorDeps } from "./routes.ts";
