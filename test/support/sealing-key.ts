import { useSealingKey } from "../../src/db/sealed.ts";
import { createSecretBox } from "../../src/lib/secret-box.ts";

// Each test worker seals PPPoE passwords with a fixed key, as the app does with SECRET_KEY.
useSealingKey(createSecretBox(Buffer.alloc(32, 7)));
