import { defineConfig } from "@playwright/test";
import base from "./playwright.config.ts";

// The console's benchmark (scripts/console-bench.sh): the same browser, its own folder.
export default defineConfig({ ...base, testDir: "bench", testMatch: "*.bench.ts", timeout: 900_000 });
