// Headless Chromium (Debian's `chromium`, installed by .ci/run) for tests that check a page renders.
import { which } from "bun";

export const CHROMIUM = process.env.CHROMIUM ?? which("chromium") ?? which("chromium-browser") ?? which("google-chrome");

/** Why a page test cannot run here, or null. Under CI a missing browser is a failure, not a skip. */
export function chromiumMissing(): string | null {
  if (CHROMIUM) return null;
  if (process.env.CI) throw new Error("CI must install chromium (apt-get install chromium) for the page tests");
  return "no chromium on this machine (apt-get install chromium)";
}

/** The DOM after the page's scripts ran. */
export async function renderedDom(file: string): Promise<string> {
  const p = Bun.spawn([CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", `file://${file}`], { stdout: "pipe", stderr: "pipe" });
  const [dom, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`chromium exited ${code}: ${await new Response(p.stderr).text()}`);
  return dom;
}

export async function screenshot(file: string, png: string, size = "1000,1500"): Promise<void> {
  const p = Bun.spawn([CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", `--window-size=${size}`, `--screenshot=${png}`, `file://${file}`], { stdout: "ignore", stderr: "pipe" });
  if ((await p.exited) !== 0) throw new Error(`chromium screenshot failed: ${await new Response(p.stderr).text()}`);
}
