#!/usr/bin/env node
// `tandao <command>`: the command line (src/cli), run through tsx like `npm start` runs the app.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
