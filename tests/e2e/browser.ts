import { constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Where the browser tests leave their screenshots and, on failure, the page's HTML (gitignored). */
export const ARTIFACTS_DIR = path.resolve('tests/artifacts/e2e');

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

/**
 * The Chromium to drive: $CHROMIUM_PATH, else Debian's. No browser is downloaded (playwright-core
 * ships none), so a missing one is an error that says what to install, never a silent skip.
 */
export async function findChromium(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const explicit = env.CHROMIUM_PATH;
  if (explicit) {
    if (await isExecutable(explicit)) return explicit;
    throw new Error(`CHROMIUM_PATH=${explicit} is not an executable file: point it at a Chromium binary or unset it`);
  }
  for (const candidate of CANDIDATES) if (await isExecutable(candidate)) return candidate;
  throw new Error(
    `no Chromium found (looked at CHROMIUM_PATH, ${CANDIDATES.join(', ')}): the browser tests need it. ` +
      'Install the Debian package: `apt-get install chromium` (.ci/run does), or set CHROMIUM_PATH=/path/to/chromium',
  );
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = await findChromium();
  // Chromium refuses to start its sandbox as root (CI containers run as root).
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return chromium.launch({ executablePath, headless: true, args: asRoot ? ['--no-sandbox'] : [] });
}

/** A full-page screenshot named `<name>.png` in ARTIFACTS_DIR; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** What helps debug a failed browser test: the page as it was (screenshot and HTML) and its URL. */
export async function dumpPage(page: Page, name: string): Promise<string[]> {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const written: string[] = [];
  try {
    written.push(await screenshot(page, name));
  } catch {
    // A crashed page cannot be captured; its HTML may still be.
  }
  try {
    const html = path.join(ARTIFACTS_DIR, `${name}.html`);
    await writeFile(html, `<!-- ${page.url()} -->\n${await page.content()}`);
    written.push(html);
  } catch {
    // Nothing more to save.
  }
  return written;
}
