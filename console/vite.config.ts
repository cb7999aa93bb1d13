import { defineConfig } from "vite";

// `npm run build` writes the console that `brightrun serve` embeds (api/build.rs runs it);
// `npm run dev` serves it with hot reload against a service on 127.0.0.1:8080.
export default defineConfig({
  build: {
    outDir: process.env.CONSOLE_OUT_DIR ?? "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
});
