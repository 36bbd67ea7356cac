/**
 * Redaction for anything that may reach a log, an error message or workflow history.
 * Removes URL passwords, and every literal secret value the caller knows of.
 */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@/i, (_m, scheme: string, cred: string) => {
    const user = cred.split(':')[0];
    return cred.includes(':') ? `${scheme}${user}:***@` : `${scheme}${cred}@`;
  });
}

export function redactSecrets(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('***');
  }
  return redactUrlsIn(out);
}

/** Redacts the password part of every URL found inside free text. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^@/\s:]+):([^@/\s]+)@/gi, '$1$2:***@');
}
