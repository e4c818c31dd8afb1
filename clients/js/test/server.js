// Starts the real keyward binary on an ephemeral port with a fresh SQLite file.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../../..");

export function keywardBin() {
  if (process.env.KEYWARD_BIN) return process.env.KEYWARD_BIN;
  return join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "keyward");
}

export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "keyward-js-"));
  const token = `kwop_${randomBytes(16).toString("hex")}`;
  const child = spawn(keywardBin(), ["--database", `sqlite://${dir}/keyward.db`, "serve", "--listen", "127.0.0.1:0"], {
    env: { ...process.env, KEYWARD_OPERATOR_TOKEN: token, KEYWARD_LOG_FORMAT: "json" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`keyward did not start:\n${log}`)), 60_000);
    child.on("exit", (code) => reject(new Error(`keyward exited (${code}):\n${log}`)));
    child.stderr.on("data", (chunk) => {
      log += chunk;
      // Only complete lines: a chunk may end in the middle of one.
      for (const line of log.split("\n").slice(0, -1)) {
        if (line.includes("keyward is serving")) {
          clearTimeout(timer);
          resolveUrl(`http://${JSON.parse(line).fields.address}`);
        }
      }
    });
  });
  child.removeAllListeners("exit");
  return { url, token, stop: () => new Promise((done) => { child.once("exit", done); child.kill("SIGTERM"); }) };
}
