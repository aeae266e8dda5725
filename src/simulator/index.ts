export { createSimulatorRoutes, type SimulatorDeps } from "./routes.ts";
